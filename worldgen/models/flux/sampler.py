"""The flow-matching sampling loop for panoramas (text and Fill), with the wrap-around seam.

One loop for every FLUX pass we run: text → panorama, image → panorama and inpainting differ
only in the conditioning channels and the guidance settings.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from worldgen.limits import STEP_CACHES
from worldgen.models.flux import latents as L
from worldgen.models.flux.text import TextEmbeddings
from worldgen.progress import Progress


@dataclass(frozen=True, kw_only=True)
class SamplingSettings:
    seam_blend_last_step: int
    """Blend the seam after steps 0..this one (the reference's `early_steps`: 3 for the panorama
    pipelines, 4 for layer inpainting; see `latents`)."""
    steps: int = 50
    guidance: float = 30.0
    """Embedded guidance (FLUX-dev is guidance-distilled)."""
    true_cfg: float = 1.0
    """True classifier-free guidance; > 1 runs a second, negative pass per step."""
    seam_extend: int = L.SEAM_EXTEND
    step_cache: str = "off"
    """Step caching through diffusers' cache hooks: off | first-block | taylorseer (see STEP_CACHES)."""


def enable_step_cache(transformer, name: str, steps: int) -> None:
    """Attach a diffusers cache hook to `transformer` (reset if one is attached already).

    first-block: skip the remaining blocks while the first block's residual changes < 5 %.
    taylorseer: full steps every 5th step after the first 3 (and the last 3); in between every
    block is skipped and the transformer's output is Taylor-extrapolated (diffusers' lite mode): a
    fixed, predictable saving with O(output) state. The default TaylorSeer (attention outputs of all
    57 blocks) keeps ~5 GiB per guidance branch at 960×1920 and still runs every MLP: measured
    slower and out of a 22 GiB budget with true CFG (bench/RESULTS.md).
    """
    from diffusers.hooks import FirstBlockCacheConfig, TaylorSeerCacheConfig

    if name not in STEP_CACHES:
        raise ValueError(f"unknown step cache {name!r}; choose one of {', '.join(STEP_CACHES)}")
    if getattr(transformer, "is_cache_enabled", False):
        transformer.disable_cache()
    if name == "first-block":
        transformer.enable_cache(FirstBlockCacheConfig(threshold=0.05))
    elif name == "taylorseer":
        transformer.enable_cache(
            TaylorSeerCacheConfig(
                cache_interval=5, disable_cache_before_step=3, disable_cache_after_step=steps - 3, use_lite_mode=True
            )
        )


def calculate_shift(tokens: int, config) -> float:
    """FLUX's resolution-dependent shift mu (linear in the image token count)."""
    slope = (config.max_shift - config.base_shift) / (config.max_image_seq_len - config.base_image_seq_len)
    return tokens * slope + config.base_shift - slope * config.base_image_seq_len


def set_timesteps(scheduler, steps: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    """Sigmas linspace(1, 1/steps) shifted with mu from the UNextended token count."""
    sigmas = np.linspace(1.0, 1 / steps, steps)
    mu = calculate_shift((h // 2) * (w // 2), scheduler.config)
    scheduler.set_timesteps(sigmas=sigmas, mu=mu, device=device)
    return scheduler.timesteps


@torch.no_grad()
def denoise(
    transformer,
    scheduler,
    noise: torch.Tensor,
    text: TextEmbeddings,
    settings: SamplingSettings,
    *,
    negative: TextEmbeddings | None = None,
    condition: torch.Tensor | None = None,
    progress: Progress | None = None,
    stage: str = "panorama",
) -> torch.Tensor:
    """Run the sampler from `noise` (B, 16, h, w); returns final latents (B, 16, h, w).

    `condition` (B, C, h, w) holds Fill conditioning on the latent grid (masked-image latents
    and the 64-channel pixel mask); it is seam-extended like the latents and concatenated to
    every transformer input.
    """
    progress = progress or Progress()
    device, dtype = transformer.device, _compute_dtype(transformer, noise)
    batch, _, h, w = noise.shape
    ext = settings.seam_extend
    w_ext = w + ext
    latents = L.pack(L.extend_seam(noise.to(device=device, dtype=dtype), ext))
    cond_tokens = None
    if condition is not None:
        cond_tokens = L.pack(L.extend_seam(condition.to(device=device, dtype=dtype), ext))
    img_ids = L.image_ids(h, w_ext, device, dtype)
    txt_ids = torch.zeros(text.sequence.shape[1], 3, device=device, dtype=dtype)
    guidance = None
    if transformer.config.guidance_embeds:
        guidance = torch.full([batch], settings.guidance, device=device, dtype=torch.float32)
    use_cfg = settings.true_cfg > 1 and negative is not None
    timesteps = set_timesteps(scheduler, settings.steps, h, w, device)

    enable_step_cache(transformer, settings.step_cache, settings.steps)

    def predict(tokens: torch.Tensor, t: torch.Tensor, emb: TextEmbeddings, branch: str) -> torch.Tensor:
        hidden = tokens if cond_tokens is None else torch.cat([tokens, cond_tokens], dim=2)
        # Cache hooks keep separate state per branch, so true CFG's two passes never mix.
        context = transformer.cache_context(branch) if settings.step_cache != "off" else contextlib.nullcontext()
        with context:
            return _forward(hidden, t, emb)

    def _forward(hidden: torch.Tensor, t: torch.Tensor, emb: TextEmbeddings) -> torch.Tensor:
        return transformer(
            hidden_states=hidden,
            timestep=t / 1000,
            guidance=guidance,
            pooled_projections=emb.pooled.to(device=device, dtype=dtype).expand(batch, -1),
            encoder_hidden_states=emb.sequence.to(device=device, dtype=dtype).expand(batch, -1, -1),
            txt_ids=txt_ids,
            img_ids=img_ids,
            return_dict=False,
        )[0]

    for i, t in enumerate(timesteps):
        progress.check()
        timestep = t.expand(batch).to(dtype)
        velocity = predict(latents, timestep, text, "cond")
        if use_cfg:
            assert negative is not None
            negative_velocity = predict(latents, timestep, negative, "uncond")
            velocity = negative_velocity + settings.true_cfg * (velocity - negative_velocity)
        latents = scheduler.step(velocity, t, latents, return_dict=False)[0]
        if i <= settings.seam_blend_last_step and ext:
            latents = L.pack(L.blend_seam(L.unpack(latents, h, w_ext), ext))
        progress.update(stage, (i + 1) / len(timesteps), f"step {i + 1}/{len(timesteps)}")
    grid = L.blend_seam(L.unpack(latents, h, w_ext), ext)
    return grid[..., :w]


def _compute_dtype(transformer, noise: torch.Tensor) -> torch.dtype:
    """The dtype activations run in: the x_embedder's weight dtype (never an fp8 storage dtype)."""
    dtype = transformer.x_embedder.weight.dtype
    return dtype if dtype in (torch.float32, torch.bfloat16, torch.float16) else noise.dtype
