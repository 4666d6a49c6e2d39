"""Text → 360° panorama: FLUX.1-dev with the HunyuanWorld PanoDiT-Text LoRA fused in.

Components take turns on the device: CLIP, then T5, then the transformer (LoRA fused while it
streams in), then the VAE. Seed-compatible with the reference demo (see `latents.initial_noise`).
"""

from __future__ import annotations

from worldgen.models.flux import latents as L
from worldgen.models.flux.lora import read_lora
from worldgen.models.flux.sampler import SamplingSettings, denoise
from worldgen.models.flux.text import encode_prompts
from worldgen.models.flux.transformer import load_transformer
from worldgen.models.flux.vae import decode, load_vae
from worldgen.models.prepared import prepared_loras
from worldgen.models.runtime import ModelRuntime
from worldgen.progress import Progress
from worldgen.stages.panorama import PanoramaResult, PanoramaSpec, effective_true_cfg, to_uint8, validate_spec

BASE_MODEL = "flux-dev"
LORA = "lora-pano-text"
DEFAULT_TRUE_CFG = 1.0


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
    settings = SamplingSettings(
        steps=spec.steps,
        guidance=spec.guidance,
        true_cfg=true_cfg,
        seam_extend=L.SEAM_EXTEND if spec.seam else 0,
        step_cache=spec.step_cache,
    )
    progress.check()
    progress.update("loading_models", 0.5, "transformer")

    def load():
        return load_transformer(repo, device=runtime.device, precision=runtime.precision, fuse=loras)

    with runtime.hold(f"{BASE_MODEL}:transformer", "flux-transformer", load) as transformer:
        from diffusers import FlowMatchEulerDiscreteScheduler

        scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(repo / "scheduler")
        latents = denoise(
            transformer,
            scheduler,
            noise,
            embeddings[0],
            settings,
            negative=embeddings[1] if use_negative else None,
            progress=progress,
        )
    progress.check()
    with runtime.hold(f"{BASE_MODEL}:vae", "vae", lambda: load_vae(repo, runtime.device, runtime.dtype)) as vae:
        image = decode(vae, latents, seam=spec.seam)
    return PanoramaResult(
        image=to_uint8(image),
        seed=spec.seed,
        settings={
            "mode": "text",
            "height": spec.height,
            "width": spec.width,
            "steps": spec.steps,
            "guidance": spec.guidance,
            "true_cfg_scale": true_cfg,
            "seam": spec.seam,
            "step_cache": spec.step_cache,
            "lora": LORA,
            "lora_prefused": not loras,
        },
    )
