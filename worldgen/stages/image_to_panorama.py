"""Image → 360° panorama: FLUX.1-Fill-dev with the PanoDiT-Image LoRA fused in.

The photo is placed at 80° FOV in the middle of an empty equirect canvas and the rest is
outpainted with true CFG 2.0. Random draws follow the reference: one CPU generator, drawn from
three times, each (B, 16, H/8, W/8): the VAE posterior sample of the placed canvas (mixed in with
weight 0 at strength 1, so only its draw is taken), then the noise, then the posterior sample of
the masked canvas.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from worldgen.geometry.perspective import perspective_to_equirect
from worldgen.models.flux import latents as L
from worldgen.models.flux.lora import read_lora
from worldgen.models.flux.text import encode_prompts
from worldgen.models.flux.vae import encode_sample, image_tensor, load_vae, mask_tensor, skip_posterior_draw
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

BASE_MODEL = "flux-fill"
LORA = "lora-pano-image"
DEFAULT_TRUE_CFG = 2.0
PREFETCH = (BASE_MODEL, LORA)
"""What the stage loads, for the job's prefetch."""
FOV_DEGREES = 80.0
POSITIVE_SUFFIX = "high-quality,  high-resolution, sharp, clear, 8k"
NEGATIVE_PREFIX = "human, person, people, messy,low-quality, blur, noise, low-resolution"
_ERODE_ITERATIONS = 5


def place_input(photo: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize the photo so its long side spans 80° and project it; returns (canvas, inpaint mask).

    The inpaint mask is 1 where the panorama must be generated (outside the eroded photo).
    """
    photo_h, photo_w = photo.shape[:2]
    if photo_w > photo_h:
        new_w = int(FOV_DEGREES / 360 * width)
        new_h = int(new_w / (photo_w / photo_h))
    else:
        new_h = int(FOV_DEGREES / 180 * height)
        new_w = int(new_h / (photo_h / photo_w))
    resized = cv2.resize(photo, (new_w, new_h), interpolation=cv2.INTER_AREA)
    canvas, inside = perspective_to_equirect(resized, FOV_DEGREES, 0.0, 0.0, height, width)
    keep = cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=_ERODE_ITERATIONS)
    canvas = canvas * keep[..., None]
    return canvas.astype(np.uint8), (1 - keep).astype(np.uint8)


def image_to_panorama(
    runtime: ModelRuntime, spec: PanoramaSpec, photo: np.ndarray, progress: Progress | None = None
) -> PanoramaResult:
    """Outpaint `photo` ((h, w, 3) uint8 RGB) into a panorama of spec.height × spec.width."""
    progress = progress or Progress()
    validate_spec(spec)
    repo = runtime.path(BASE_MODEL)
    lora = read_lora(runtime.path(LORA), LORA)
    true_cfg = effective_true_cfg(spec, DEFAULT_TRUE_CFG)
    use_negative = true_cfg > 1
    prompt = f"{spec.prompt}, {POSITIVE_SUFFIX}"
    negative = f"{NEGATIVE_PREFIX}, {spec.negative_prompt}"

    canvas, mask = place_input(photo, spec.height, spec.width)
    progress.update("loading_models", 0.0, "text encoders")
    embeddings = encode_prompts(runtime, BASE_MODEL, [prompt, negative] if use_negative else [prompt], progress)
    image = image_tensor(canvas)
    mask_t = mask_tensor(mask.astype(bool))
    masked = image * (1 - mask_t)
    generator = torch.Generator("cpu").manual_seed(spec.seed)
    h, w = L.latent_size(spec.height, spec.width)
    progress.check()
    with runtime.hold(f"{BASE_MODEL}:vae", "vae", lambda: load_vae(repo, runtime.device, runtime.dtype)) as vae:
        skip_posterior_draw(vae, image, generator)  # draw 1
        noise = torch.randn((1, L.LATENT_CHANNELS, h, w), generator=generator, dtype=runtime.dtype)  # draw 2
        masked_latents = encode_sample(vae, masked, generator, mode=spec.vae_mode)  # draw 3
    condition = torch.cat(
        [masked_latents.to(runtime.dtype), L.patchify_mask(mask_t).to(masked_latents.device, runtime.dtype)], dim=1
    )
    panorama = generate(
        runtime,
        BASE_MODEL,
        spec,
        noise,
        embeddings[0],
        embeddings[1] if use_negative else None,
        true_cfg,
        [lora],
        progress,
        condition=condition,
    )
    return PanoramaResult(image=panorama, settings=describe(spec, "image", true_cfg, LORA, fov_degrees=FOV_DEGREES))
