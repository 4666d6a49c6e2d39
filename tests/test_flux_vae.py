"""Seam-aware VAE decode: wrapped columns blended in, row tiles only as a memory fallback."""

from __future__ import annotations

from pathlib import Path

import torch

from worldgen.models.flux.vae import choose_tile_rows, decode, load_vae


def _vae(tiny_models: Path):
    return load_vae(tiny_models / "black-forest-labs/FLUX.1-dev", torch.device("cpu"), torch.float32)


def test_seam_decode_blends_the_wrapped_copy(tiny_models: Path) -> None:
    vae = _vae(tiny_models)
    z = torch.randn(1, 16, 8, 24, generator=torch.Generator().manual_seed(0))
    plain = decode(vae, z, seam=False, tile_rows=0)
    seam = decode(vae, z, seam=True, tile_rows=0)
    assert seam.shape == plain.shape == (1, 3, 64, 192)
    wrapped = vae.decode(torch.cat([z, z[..., :2]], dim=-1) / vae.config.scaling_factor + vae.config.shift_factor)
    wrapped = wrapped.sample.float()
    torch.testing.assert_close(seam[..., 0], wrapped[..., 192].clamp(-1, 1))  # column 0 is the wrapped copy
    torch.testing.assert_close(seam[..., 16:], wrapped[..., 16:192].clamp(-1, 1))  # the rest: wider decode, cropped
    x = 8
    mixed = wrapped[..., 192 + x] * (1 - x / 16) + wrapped[..., x] * (x / 16)
    torch.testing.assert_close(seam[..., x], mixed.clamp(-1, 1))


def test_row_tiles_match_full_frame(tiny_models: Path) -> None:
    vae = _vae(tiny_models)
    z = torch.randn(1, 16, 32, 64, generator=torch.Generator().manual_seed(1))
    full = decode(vae, z, seam=True, tile_rows=0)
    tiled = decode(vae, z, seam=True, tile_rows=16)
    assert tiled.shape == full.shape
    assert (tiled - full).abs().mean() < 0.05 * full.abs().mean()
    assert choose_tile_rows(vae, 120, 242) == 0  # CPU: always full frame
