"""FLUX VAE with wrap-around awareness, in two modes: `full-frame` (default) and `reference`.

Decode appends two wrapped latent columns, so the decoder sees the right edge continue into the
left one, then blends the 16 extra pixel columns into the first 16 (weight 1 − x/16 on the
wrapped copy).

- `full-frame` encodes and decodes the whole frame at once: the exact transform, with no tile
  boundaries (at 960×1920 a decode costs ~4 GiB and 0.16 s on an H200, 100× faster than generic
  tiling). The seam blend and the [-1, 1] → [0, 1] step run in float32. Row tiles (the
  reference's scheme, sized to the free memory) are used only when the frame would not fit.
- `reference` reproduces HunyuanWorld-1.0 exactly: its pipelines turn VAE tiling on, so images
  wider or taller than the VAE's sample size (1024) are *encoded* with diffusers' tiled encoder,
  and every decode goes through its row-tiled decoder (tiles of 128 latent rows every 96, the
  last 256 pixel rows of each tile cross-faded into the next, then the seam), all in the VAE's
  dtype. Used by the parity tests and for worlds that must match the reference bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from worldgen.limits import VAE_MODES

DECODE_WRAP_COLUMNS = 2
"""Latent columns appended for the seam-aware decode (→ 16 pixel columns)."""
_BYTES_PER_PIXEL_BF16 = 2400.0
"""Measured: a full-frame 960×1920 decode of the real VAE adds 4.2 GiB in bf16."""
_TILE_OVERLAP = 0.25
"""diffusers' (and so the reference's) tile overlap factor."""


def load_vae(repo: Path, device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(repo / "vae", dtype=dtype).to(device).eval().requires_grad_(False)


def to_vae_space(vae, latents: torch.Tensor) -> torch.Tensor:
    return latents / vae.config.scaling_factor + vae.config.shift_factor


def from_vae_space(vae, latents: torch.Tensor) -> torch.Tensor:
    return (latents - vae.config.shift_factor) * vae.config.scaling_factor


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB → (1, 3, H, W) float32 in [-1, 1], through diffusers' VaeImageProcessor
    as the reference's pipelines do: same values and the same (channels-last) memory layout, on
    which the CPU convolution's arithmetic depends."""
    from diffusers.image_processor import VaeImageProcessor
    from PIL import Image

    height, width = image.shape[:2]
    return VaeImageProcessor(vae_scale_factor=16).preprocess(Image.fromarray(image), height=height, width=width)


def mask_tensor(mask: np.ndarray) -> torch.Tensor:
    """(H, W) mask → (1, 1, H, W) float32 of 0/1 (1 = generate), as the reference's Fill mask
    processor makes it: grayscale, /255, binarised at 0.5. `mask` is bool, or uint8 grey levels
    (a resized mask keeps its in-between levels until this binarisation, as in the reference)."""
    from diffusers.image_processor import VaeImageProcessor
    from PIL import Image

    if mask.dtype not in (np.bool_, np.uint8):
        raise TypeError(f"a mask is bool or uint8 grey levels, not {mask.dtype}")
    height, width = mask.shape[:2]
    processor = VaeImageProcessor(vae_scale_factor=16, do_normalize=False, do_binarize=True, do_convert_grayscale=True)
    grey = mask.astype(np.uint8) * 255 if mask.dtype == np.bool_ else mask
    pil = Image.fromarray(np.ascontiguousarray(grey.reshape(height, width)))
    return processor.preprocess(pil, height=height, width=width)


def skip_posterior_draw(vae, images: torch.Tensor, generator: torch.Generator) -> None:
    """Advance `generator` exactly as `encode_sample(vae, images, generator)` would, without encoding.

    The reference's image → panorama pipeline samples the VAE posterior of the placed photo first,
    then mixes it into the noise with weight 1 − σ₀ = 0 (strength 1): only its draw matters."""
    b, _, height, width = images.shape
    channels = vae.config.latent_channels
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    torch.randn((b, channels, height // scale, width // scale), generator=generator, dtype=vae.dtype)


@torch.no_grad()
def encode_sample(vae, images: torch.Tensor, generator: torch.Generator, *, mode: str = "full-frame") -> torch.Tensor:
    """Images in [-1, 1] → a posterior sample in transformer latent space (draws from `generator`)."""
    _check_mode(mode)
    with _tiling(vae, mode == "reference"):
        posterior = vae.encode(images.to(device=vae.device, dtype=vae.dtype)).latent_dist
    return from_vae_space(vae, posterior.sample(generator))


@torch.no_grad()
def decode(
    vae, latents: torch.Tensor, *, seam: bool, mode: str = "full-frame", tile_rows: int | None = None
) -> torch.Tensor:
    """Transformer-space latents (B, 16, h, w) → images (B, 3, 8h, 8w) in [-1, 1].

    `full-frame`: float32 out; `tile_rows=None` picks full frame when it fits the free memory, else
    row tiles of that many latent rows; an explicit value forces tiling (0 forces full frame).
    `reference`: the reference's row tiles at the VAE's tile size, in (and returned in) the VAE dtype.
    """
    _check_mode(mode)
    z = to_vae_space(vae, latents.to(device=vae.device, dtype=vae.dtype))
    width = z.shape[-1] * 8
    if seam:
        z = torch.cat([z, z[..., :DECODE_WRAP_COLUMNS]], dim=-1)
    if mode == "reference":
        image = _decode_row_tiles(vae, z, vae.tile_latent_min_size)
        return (_blend_seam(image, width) if seam else image).clamp(-1, 1)
    rows = choose_tile_rows(vae, z.shape[-2], z.shape[-1]) if tile_rows is None else tile_rows
    image = _decode_full(vae, z) if not rows or rows >= z.shape[-2] else _decode_row_tiles(vae, z, rows)
    image = image.float()
    if seam:
        image = _blend_seam(image, width)
    return image.clamp(-1, 1)


def choose_tile_rows(vae, h: int, w: int) -> int:
    """0 (full frame) if the decode fits the device's free memory, else a row-tile height."""
    if vae.device.type != "cuda":
        return 0
    from worldgen.models.device import available_gpu_bytes

    free = available_gpu_bytes(vae.device)
    scale = (vae.config.block_out_channels[0] / 128) * (torch.finfo(vae.dtype).bits / 16)
    per_latent_row = _BYTES_PER_PIXEL_BF16 * scale * 64 * w
    if per_latent_row * h * 1.2 < free:
        return 0
    return max(8, int(free / (per_latent_row * 1.2)) // 4 * 4)


def _check_mode(mode: str) -> None:
    if mode not in VAE_MODES:
        raise ValueError(f"unknown VAE mode {mode!r}; choose one of {', '.join(VAE_MODES)}")


@contextmanager
def _tiling(vae, on: bool) -> Iterator[None]:
    """diffusers' own tiled encode for the duration (what the reference's `enable_tiling` selects)."""
    before = vae.use_tiling
    vae.use_tiling = on
    try:
        yield
    finally:
        vae.use_tiling = before


def _decode_full(vae, z: torch.Tensor) -> torch.Tensor:
    return vae.decode(z, return_dict=False)[0]


def _cross_fade(previous: torch.Tensor, current: torch.Tensor, extent: int, dim: int) -> torch.Tensor:
    """`current` with its first `extent` slices along `dim` faded in from the last `extent` of `previous`:
    slice i = previous[-extent + i]·(1 − i/extent) + current[i]·(i/extent). Each product is rounded
    to the tensor's dtype before the sum, as diffusers' per-row loop does."""
    extent = min(extent, previous.shape[dim], current.shape[dim])
    if extent == 0:
        return current
    shape = [1] * current.dim()
    shape[dim] = extent
    ramp = torch.tensor([i / extent for i in range(extent)], dtype=torch.float32, device=current.device)
    fade_out = torch.tensor([1 - i / extent for i in range(extent)], dtype=torch.float32, device=current.device)
    head = current.narrow(dim, 0, extent)
    tail = previous.narrow(dim, previous.shape[dim] - extent, extent)
    mixed = (tail.float() * fade_out.view(shape)).to(current.dtype) + (head.float() * ramp.view(shape)).to(
        current.dtype
    )
    return torch.cat([mixed, current.narrow(dim, extent, current.shape[dim] - extent)], dim=dim)


def _blend_seam(image: torch.Tensor, width: int) -> torch.Tensor:
    """Columns 0..extra-1 faded in from the wrapped copy beyond `width`; returns the first `width` columns."""
    return _cross_fade(image[..., width:], image[..., :width], image.shape[-1] - width, dim=-1)


def _decode_row_tiles(vae, z: torch.Tensor, rows: int) -> torch.Tensor:
    """The reference's row-tiled decode: full-width tiles of `rows` (a multiple of 4) latent rows
    starting every 0.75·rows; each tile's first 0.25·rows·8 pixel rows cross-faded from the
    previous tile's last ones, and each tile contributes its first 0.75·rows·8 rows (the last: all)."""
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    stride = int(rows * (1 - _TILE_OVERLAP))
    blend = int(rows * scale * _TILE_OVERLAP)
    limit = rows * scale - blend
    tiles = [_decode_full(vae, z[..., start : start + rows, :]) for start in range(0, z.shape[-2], stride)]
    kept = []
    for i, tile in enumerate(tiles):
        if i > 0:
            tile = _cross_fade(tiles[i - 1], tile, blend, dim=-2)
        kept.append(tile[..., :limit, :])
    return torch.cat(kept, dim=-2)
