"""Panorama inpainting with ONE FLUX.1-Fill transformer and switchable LoRA adapters.

All prompts of the layer passes are known up front (the negatives name the labels), so they are
encoded once before the transformer loads; the transformer then stays resident for the fg1, fg2
and sky passes while detection and segmentation models come and go, and the Scene/Sky LoRAs are
switched between passes instead of keeping a pipeline per LoRA. It loads at the first pass, not
before: fg1's detection and mattes run with the whole card to themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from worldgen.models.flux import latents as L
from worldgen.models.flux.adapters import LoraAdapters
from worldgen.models.flux.lora import read_lora
from worldgen.models.flux.sampler import SamplingSettings, denoise
from worldgen.models.flux.text import TextEmbeddings, encode_prompts
from worldgen.models.flux.transformer import load_transformer
from worldgen.models.flux.vae import decode, encode_sample, image_tensor, load_vae, mask_tensor
from worldgen.models.runtime import ModelRuntime
from worldgen.progress import Progress
from worldgen.stages.panorama import to_uint8

BASE_MODEL = "flux-fill"
ADAPTERS = {"scene": "lora-inpaint-scene", "sky": "lora-inpaint-sky"}
INPAINT_SEED = 25
SKY_PROMPT = "sky-coverage, whole sky image, ultra-high definition stratosphere"
SKY_NEGATIVE = (
    "object, text, defocus, pure color, low-res, blur, pixelation, foggy, noise, mosaic, artifacts, "
    "low-contrast, low-quality, blurry, tree, grass, plant, ground, land, mountain, building, lake, river, sea, ocean"
)
# The reference's strings verbatim, missing spaces ("rock,building", "sink,ceramic") included: they
# change the T5/CLIP tokens. The labels of the removed objects are appended as ", a, b".
SCENE_NEGATIVE = {
    "outdoor": "object, chair, tree, plant, flower, grass, stone, rock,building, hill, house, tower, light, lamp, "
    "low-resolution, blur, mosaic, people",
    "indoor": "object, table, chair, seat, shelf, sofa, bed, bath, sink,ceramic, wood, plant, tree, light, lamp, "
    "candle, television, electronics,oven, fire, low-resolution, blur, mosaic, people",
}


@dataclass(frozen=True)
class InpaintPass:
    name: str
    adapter: str
    prompt: str
    negative: str
    guidance: float
    true_cfg: float = 5.0


def scene_pass(name: str, scene: str, labels: list[str]) -> InpaintPass:
    negative = SCENE_NEGATIVE[scene] + (", " + ", ".join(labels) if labels else "")
    return InpaintPass(name, "scene", "", negative, guidance=30.0)


def sky_pass() -> InpaintPass:
    return InpaintPass("sky", "sky", SKY_PROMPT, SKY_NEGATIVE, guidance=20.0)


class Inpainter:
    """Holds the encoded prompts and runs passes; the Fill transformer (with both adapters) is
    loaded by the first pass and stays resident until the `inpainter` block ends."""

    def __init__(
        self,
        runtime: ModelRuntime,
        load: Callable[[], torch.nn.Module],
        adapter_weights: dict,
        embeddings: dict[str, TextEmbeddings],
        steps: int,
        seed: int,
        step_cache: str,
        vae_mode: str,
        resources: ExitStack,
    ) -> None:
        self.runtime, self.load, self.adapter_weights = runtime, load, adapter_weights
        self.embeddings, self.steps, self.seed, self.step_cache = embeddings, steps, seed, step_cache
        self.vae_mode, self.resources = vae_mode, resources
        self.transformer: torch.nn.Module | None = None
        self.adapters: LoraAdapters | None = None

    def loaded(self) -> tuple[torch.nn.Module, LoraAdapters]:
        """The resident transformer and its adapters, loading them on first use."""
        if self.transformer is None or self.adapters is None:
            hold = self.runtime.hold(f"{BASE_MODEL}:transformer", "flux-transformer", self.load)
            self.transformer = self.resources.enter_context(hold)
            self.adapters = LoraAdapters(self.transformer, self.adapter_weights, self.runtime.dtype)
            self.resources.callback(self.adapters.remove)  # unwound first: hooks off, then the weights go
        return self.transformer, self.adapters

    def run(self, spec: InpaintPass, image: np.ndarray, mask: np.ndarray, progress: Progress) -> np.ndarray:
        """Fill `mask` (H, W) of `image` (H, W, 3) uint8; returns the new image. The mask is bool
        (True = generate) or uint8 grey levels, binarised at 0.5 like the reference's pipeline.
        `progress`: the pass's part of the layers stage (encoding, loading, the steps, decoding)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        progress.update("layers", 0.0, "encoding the masked image")
        runtime = self.runtime
        height, width = image.shape[:2]
        generator = torch.Generator("cpu").manual_seed(self.seed)
        h, w = L.latent_size(height, width)
        noise = torch.randn((1, L.LATENT_CHANNELS, h, w), generator=generator, dtype=runtime.dtype)
        mask_t = mask_tensor(mask)
        masked_pixels = image_tensor(np.ascontiguousarray(image)) * (1 - mask_t)
        repo = runtime.path(BASE_MODEL)
        with runtime.hold(f"{BASE_MODEL}:vae", "vae", lambda: load_vae(repo, runtime.device, runtime.dtype)) as vae:
            masked = encode_sample(vae, masked_pixels, generator, mode=self.vae_mode)
        condition = torch.cat([masked.to(runtime.dtype), L.patchify_mask(mask_t).to(masked.device, runtime.dtype)], 1)
        if self.transformer is None:
            progress.update("layers", 0.03, "loading the inpainting model")
        transformer, adapters = self.loaded()
        adapters.activate(spec.adapter)
        settings = SamplingSettings(
            steps=self.steps,
            guidance=spec.guidance,
            true_cfg=spec.true_cfg,
            step_cache=self.step_cache,
            seam_blend_last_step=L.SEAM_BLEND_LAST_STEP_INPAINT,
        )
        scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(repo / "scheduler")
        latents = denoise(
            transformer,
            scheduler,
            noise,
            self.embeddings[spec.prompt],
            settings,
            negative=self.embeddings[spec.negative],
            condition=condition,
            progress=progress.span("layers", 0.05, 0.95),
            stage="layers",
        )
        progress.update("layers", 0.95, "decoding")
        with runtime.hold(f"{BASE_MODEL}:vae", "vae", lambda: load_vae(repo, runtime.device, runtime.dtype)) as vae:
            return to_uint8(decode(vae, latents, seam=True, mode=self.vae_mode))


@contextmanager
def inpainter(
    runtime: ModelRuntime,
    passes: list[InpaintPass],
    progress: Progress,
    *,
    steps: int = 50,
    seed: int = INPAINT_SEED,
    step_cache: str = "off",
    vae_mode: str = "full-frame",
) -> Iterator[Inpainter]:
    """Encode every pass's prompts; the Fill transformer loads at the first pass and stays."""
    texts = sorted({p.prompt for p in passes} | {p.negative for p in passes})
    # Internal prompts: their (long, fixed) negatives are truncated like the reference's, without a warning.
    embeddings = dict(zip(texts, encode_prompts(runtime, BASE_MODEL, texts), strict=True))
    adapters = {name: read_lora(runtime.path(model), name) for name, model in ADAPTERS.items()}
    repo = runtime.path(BASE_MODEL)

    def load():
        return load_transformer(repo, device=runtime.device, precision=runtime.precision)

    with ExitStack() as resources:
        yield Inpainter(runtime, load, adapters, embeddings, steps, seed, step_cache, vae_mode, resources)
