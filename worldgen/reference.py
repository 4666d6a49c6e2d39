"""Which HunyuanWorld-1.0 behaviour a world was made with: the reference commit we match, and the
deliberate differences in force for a request (docs/reference-parity.md has the full audit).

Written into manifest.json, so that a world can be traced to the behaviour that produced it.
"""

from __future__ import annotations

from typing import Any

REFERENCE_REPO = "Tencent-Hunyuan/HunyuanWorld-1.0"
REFERENCE_COMMIT = "d17a023"
PARITY_DOC = "docs/reference-parity.md"

ALWAYS = (
    "inpainting LoRAs (Scene, Sky) as switchable adapters on one Fill transformer instead of fused into two "
    "pipelines (max 2.4e-7 apart in fp32)",
    "ZIM on the GPU when there is one, through onnxruntime's CUDA provider or else the same graphs in torch "
    "(onnx2torch) (the reference runs it on the CPU), 16 boxes per call",
    "continuous, monotonic background depth compression curve (the reference's jumps at 0.9 max depth)",
    "depth views sampled with the seam wrapped (the reference blends black in at the seam and the poles); "
    "depth-edge cuts wrap the seam too",
    "vectorised gap filling (the reference loops in Python and fills differently); triangles face the centre",
    "PLY positions float32 without normals; Draco RGB without normals at 14-bit positions (the reference: 28)",
)
"""Differences in force for every world."""


def behaviour(request: Any, precision: str) -> dict[str, Any]:
    """The reference we match and the deliberate differences in force for `request` (a WorldRequest)."""
    differences = list(ALWAYS)
    if request.vae_mode == "full-frame":
        differences.append(
            "full-frame VAE encode and decode (the reference encodes frames wider than 1024 px in tiles and "
            "decodes in 128-latent-row tiles); seam blend and [0, 1] scaling in float32"
        )
    if request.step_cache != "off":
        differences.append(f"step cache '{request.step_cache}' (the reference demo runs every step in full)")
    if precision != "bf16":
        differences.append(f"precision '{precision}' (the reference runs in bf16)")
    return {
        "reference": f"{REFERENCE_REPO}@{REFERENCE_COMMIT}",
        "parity": PARITY_DOC,
        "vae_mode": str(request.vae_mode),
        "step_cache": str(request.step_cache),
        "deliberate_differences": differences,
    }
