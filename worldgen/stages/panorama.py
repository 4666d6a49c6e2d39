"""What both panorama stages share: request settings, their validation, and the output image."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from worldgen.errors import InvalidRequest
from worldgen.limits import DEFAULT_HEIGHT, DEFAULT_WIDTH
from worldgen.models.flux import latents as L


@dataclass(frozen=True)
class PanoramaSpec:
    prompt: str
    seed: int
    negative_prompt: str = ""
    height: int = DEFAULT_HEIGHT
    width: int = DEFAULT_WIDTH
    steps: int = 50
    guidance: float = 30.0
    true_cfg_scale: float | None = None
    """None = the mode's default (text: 1.0 = off, as the reference; image: 2.0)."""
    step_cache: str = "off"
    """off | first-block | taylorseer: diffusers cache hooks, trading a little fidelity for speed."""
    seam: bool = True
    """Seam handling (latent extension + blending + wrapped decode). Off only to measure its effect."""
    vae_mode: str = "full-frame"
    """full-frame | reference: see `worldgen.models.flux.vae`."""


@dataclass
class PanoramaResult:
    image: np.ndarray
    """(H, W, 3) uint8 RGB equirectangular panorama."""
    settings: dict[str, object] = field(default_factory=dict)


def validate_spec(spec: PanoramaSpec) -> None:
    """Reject what the pipeline cannot do, with messages that name the field. The limits are the
    world request's (one schema for every entry point); only the width is the stage's own."""
    from pydantic import ValidationError

    from worldgen.request import WorldRequest, validation_problems

    if spec.width != 2 * spec.height:
        raise InvalidRequest(
            f"a panorama is 2:1 (width = 2 × height); got {spec.width}×{spec.height}", details={"field": "width"}
        )
    fields = ("prompt", "negative_prompt", "seed", "height", "steps", "guidance", "true_cfg_scale", "step_cache")
    try:
        WorldRequest.model_validate({name: getattr(spec, name) for name in (*fields, "vae_mode")})
    except ValidationError as exc:
        field, message = validation_problems(exc)[0]
        raise InvalidRequest(f"{field}: {message}", details={"field": field}) from None


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Decoded (1, 3, H, W) in [-1, 1] → (H, W, 3) uint8 like diffusers' postprocess: scaled to
    [0, 1] in the images' own dtype, then rounded from float32."""
    array = (images[0] / 2 + 0.5).clamp(0, 1).float().permute(1, 2, 0).cpu().numpy()
    return (array * 255).round().astype(np.uint8)


def effective_true_cfg(spec: PanoramaSpec, default: float) -> float:
    return default if spec.true_cfg_scale is None else spec.true_cfg_scale


def generate(
    runtime,
    model: str,
    spec: PanoramaSpec,
    noise: torch.Tensor,
    text,
    negative,
    true_cfg: float,
    loras: list,
    progress,
    condition: torch.Tensor | None = None,
) -> np.ndarray:
    """The part both panorama stages share: load the transformer (LoRAs fused while it streams
    in), sample with the seam handling, free it, decode with the seam-aware VAE."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from worldgen.models.flux.sampler import SamplingSettings, denoise
    from worldgen.models.flux.transformer import load_transformer
    from worldgen.models.flux.vae import decode, load_vae

    repo = runtime.path(model)
    settings = SamplingSettings(
        steps=spec.steps,
        guidance=spec.guidance,
        true_cfg=true_cfg,
        seam_extend=L.SEAM_EXTEND if spec.seam else 0,
        seam_blend_last_step=L.SEAM_BLEND_LAST_STEP_PANORAMA,
        step_cache=spec.step_cache,
    )
    progress.update("loading_models", 0.5, "transformer")

    def load():
        return load_transformer(repo, device=runtime.device, precision=runtime.precision, fuse=loras)

    # The key names the fused LoRAs: a warm runtime must not hand this transformer to a step
    # that wants the bare one (the layers' inpainting) or another LoRA.
    key = f"{model}:transformer" + "".join(f"+{lora.name}" for lora in loras)
    with runtime.hold(key, "flux-transformer", load) as transformer:
        scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(repo / "scheduler")
        progress.update("panorama", 0.0, f"step 0/{spec.steps}")
        steps = progress.span("panorama", 0.0, 0.95)
        latents = denoise(
            transformer, scheduler, noise, text, settings, negative=negative, condition=condition, progress=steps
        )
    progress.check()
    progress.update("panorama", 0.95, "decoding")
    with runtime.hold(f"{model}:vae", "vae", lambda: load_vae(repo, runtime.device, runtime.dtype)) as vae:
        return to_uint8(decode(vae, latents, seam=spec.seam, mode=spec.vae_mode))


def describe(spec: PanoramaSpec, mode: str, true_cfg: float, lora: str, **extra: object) -> dict[str, object]:
    """The settings recorded in the manifest."""
    return {
        "mode": mode,
        "height": spec.height,
        "width": spec.width,
        "steps": spec.steps,
        "guidance": spec.guidance,
        "true_cfg_scale": true_cfg,
        "seam": spec.seam,
        "step_cache": spec.step_cache,
        "vae_mode": spec.vae_mode,
        "seam_blend_steps": f"0..{L.SEAM_BLEND_LAST_STEP_PANORAMA}",
        "lora": lora,
        **extra,
    }
