"""Text → 360° panorama: FLUX.1-dev with the HunyuanWorld PanoDiT-Text LoRA fused in.

Components take turns on the device: CLIP, then T5, then the transformer (LoRA fused while it
streams in), then the VAE. Seed-compatible with the reference demo (see `latents.initial_noise`).
"""

from __future__ import annotations

from worldgen.models.flux import latents as L
from worldgen.models.flux.lora import read_lora
from worldgen.models.flux.text import encode_prompts
from worldgen.models.prepared import prepared_loras
from worldgen.models.runtime import ModelRuntime
from worldgen.progress import Progress
from worldgen.stages.panorama import (
    PanoramaResult,
    PanoramaSpec,
    describe,
    effective_true_cfg,
    generate,
    validate_spec,
)

BASE_MODEL = "flux-dev"
LORA = "lora-pano-text"
DEFAULT_TRUE_CFG = 1.0
PREFETCH = (BASE_MODEL, LORA)
"""What the stage loads, for the job's prefetch (a prepared set has no LoRA folder: skipped)."""


def text_to_panorama(runtime: ModelRuntime, spec: PanoramaSpec, progress: Progress | None = None) -> PanoramaResult:
    progress = progress or Progress()
    validate_spec(spec)
    repo = runtime.path(BASE_MODEL)
    # A prepared model set has the LoRA fused already (`worldgen models prepare`).
    loras = [] if LORA in prepared_loras(repo) else [read_lora(runtime.path(LORA), LORA)]
    true_cfg = effective_true_cfg(spec, DEFAULT_TRUE_CFG)
    use_negative = true_cfg > 1
    if spec.negative_prompt.strip() and not use_negative:
        progress.warn("negative_prompt has no effect unless true_cfg_scale > 1 (which doubles the cost)")

    noise = L.initial_noise(spec.seed, 1, spec.height, spec.width, runtime.dtype)
    progress.update("loading_models", 0.0, "text encoders")
    prompts = [spec.prompt, spec.negative_prompt] if use_negative else [spec.prompt]
    embeddings = encode_prompts(runtime, BASE_MODEL, prompts, progress)
    progress.check()
    image = generate(
        runtime,
        BASE_MODEL,
        spec,
        noise,
        embeddings[0],
        embeddings[1] if use_negative else None,
        true_cfg,
        loras,
        progress,
    )
    return PanoramaResult(image=image, settings=describe(spec, "text", true_cfg, LORA, lora_prefused=not loras))
