"""FLUX VAE with wrap-around awareness: seam-blended decode, row tiles only when memory is short.

Decode appends two wrapped latent columns, so the decoder sees the right edge continue into the
left one, then blends the 16 extra pixel columns into the first 16 (weight 1 − x/16 on the
wrapped copy). Full-frame decode is the default: at 960×1920 it costs ~4 GiB and 0.16 s on an
H200, 100× faster than generic tiling; row tiles (full width, blended vertically) are used only
when the frame would not fit in the memory available.
"""

from __future__ import annotations

from pathlib import Path

import torch

DECODE_WRAP_COLUMNS = 2
"""Latent columns appended for the seam-aware decode (→ 16 pixel columns)."""
_BYTES_PER_PIXEL_BF16 = 2400.0
"""Measured: a full-frame 960×1920 decode of the real VAE adds 4.2 GiB in bf16."""
_TILE_OVERLAP_ROWS = 8


def load_vae(repo: Path, device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(repo / "vae", dtype=dtype).to(device).eval().requires_grad_(False)


def to_vae_space(vae, latents: torch.Tensor) -> torch.Tensor:
    return latents / vae.config.scaling_factor + vae.config.shift_factor


def from_vae_space(vae, latents: torch.Tensor) -> torch.Tensor:
    return (latents - vae.config.shift_factor) * vae.config.scaling_factor


@torch.no_grad()
def encode_sample(vae, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Images in [-1, 1] → a posterior sample in transformer latent space (draws from `generator`)."""
    posterior = vae.encode(images.to(device=vae.device, dtype=vae.dtype)).latent_dist
    return from_vae_space(vae, posterior.sample(generator))


@torch.no_grad()
def decode(vae, latents: torch.Tensor, *, seam: bool, tile_rows: int | None = None) -> torch.Tensor:
    """Transformer-space latents (B, 16, h, w) → images (B, 3, 8h, 8w) in [-1, 1], float32.

    `tile_rows=None` picks full frame when it fits the free memory, else row tiles of that many
    latent rows; an explicit value forces tiling (0 forces full frame).
    """
    z = to_vae_space(vae, latents.to(device=vae.device, dtype=vae.dtype))
    width = z.shape[-1] * 8
    if seam:
        z = torch.cat([z, z[..., :DECODE_WRAP_COLUMNS]], dim=-1)
    rows = choose_tile_rows(vae, z.shape[-2], z.shape[-1]) if tile_rows is None else tile_rows
    image = _decode_full(vae, z) if not rows or rows >= z.shape[-2] else _decode_row_tiles(vae, z, rows)
    image = image.float()
    if seam:
        extra = image.shape[-1] - width
        weight = torch.arange(extra, device=image.device, dtype=torch.float32) / extra
        wrapped = image[..., width:]
        image[..., :extra] = wrapped * (1 - weight) + image[..., :extra] * weight
        image = image[..., :width]
    return image.clamp(-1, 1)


def choose_tile_rows(vae, h: int, w: int) -> int:
    """0 (full frame) if the decode fits the device's free memory, else a row-tile height."""
    if vae.device.type != "cuda":
        return 0
    from worldgen.models.runtime import available_gpu_bytes

    free = available_gpu_bytes(vae.device)
    scale = (vae.config.block_out_channels[0] / 128) * (torch.finfo(vae.dtype).bits / 16)
    per_latent_row = _BYTES_PER_PIXEL_BF16 * scale * 64 * w
    if per_latent_row * h * 1.2 < free:
        return 0
    return max(2 * _TILE_OVERLAP_ROWS, int(free / (per_latent_row * 1.2)))


def _decode_full(vae, z: torch.Tensor) -> torch.Tensor:
    return vae.decode(z, return_dict=False)[0]


def _decode_row_tiles(vae, z: torch.Tensor, rows: int) -> torch.Tensor:
    """Decode full-width horizontal bands and cross-fade their overlaps (linear ramps)."""
    h = z.shape[-2]
    overlap = min(_TILE_OVERLAP_ROWS, rows // 2)
    stride = rows - overlap
    starts = list(range(0, max(h - overlap, 1), stride))
    out = None
    total = None
    for start in starts:
        stop = min(start + rows, h)
        tile = vae.decode(z[..., start:stop, :], return_dict=False)[0].float()
        scale = tile.shape[-2] // (stop - start)
        weight = torch.ones(tile.shape[-2], device=tile.device)
        ramp = torch.linspace(0, 1, overlap * scale + 2, device=tile.device)[1:-1]
        if start > 0:
            weight[: overlap * scale] = ramp
        if stop < h:
            weight[-overlap * scale :] = ramp.flip(0)
        if out is None:
            out = tile.new_zeros((*tile.shape[:2], h * scale, tile.shape[-1]))
            total = tile.new_zeros((h * scale, 1))
        out[..., start * scale : stop * scale, :] += tile * weight[:, None]
        total[start * scale : stop * scale] += weight[:, None]
        if stop == h:
            break
    assert out is not None and total is not None
    return out / total
