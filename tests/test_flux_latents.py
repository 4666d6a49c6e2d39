"""Packing, RoPE ids, noise convention and seam blending on the latent grid."""

from __future__ import annotations

import torch

from worldgen.models.flux import latents as L


def test_pack_roundtrip_and_layout() -> None:
    grid = torch.randn(2, 16, 6, 10)
    tokens = L.pack(grid)
    assert tokens.shape == (2, 15, 64)
    assert torch.equal(L.unpack(tokens, 6, 10), grid)
    # token (row 1, col 2) holds channel 0's 2×2 patch first: rows 2..3, cols 4..5
    assert torch.equal(tokens[0, 1 * 5 + 2, :4], grid[0, 0, 2:4, 4:6].reshape(-1))


def test_image_ids() -> None:
    ids = L.image_ids(4, 12, torch.device("cpu"), torch.float32)
    assert ids.shape == (2 * 6, 3)
    assert ids[:, 0].eq(0).all()
    assert ids[7].tolist() == [0.0, 1.0, 1.0]


def test_noise_convention() -> None:
    expected = torch.randn((1, 16, 120, 240), generator=torch.Generator("cpu").manual_seed(1234), dtype=torch.bfloat16)
    assert torch.equal(L.initial_noise(1234, 1, 960, 1920, torch.bfloat16), expected)
    assert L.latent_size(960, 1920) == (120, 240)


def test_extend_and_blend_seam() -> None:
    grid = torch.randn(1, 3, 4, 20)
    extended = L.extend_seam(grid, 6)
    assert extended.shape[-1] == 26 and torch.equal(extended[..., 20:], grid[..., :6])
    extended[..., 20:] += 1.0  # the right copies drift during denoising
    blended = L.blend_seam(extended, 6)
    for x in range(6):
        expected = extended[..., 20 + x] * (1 - x / 6) + extended[..., x] * (x / 6)
        torch.testing.assert_close(blended[..., x], expected)
    assert torch.equal(blended[..., 6:], extended[..., 6:])
    assert torch.equal(L.blend_seam(grid, 0), grid)


def test_patchify_mask() -> None:
    mask = torch.zeros(1, 1, 16, 32)
    mask[..., 8:16, 0:8] = 1  # one full patch at latent (1, 0)
    mask[..., 0, 9] = 1  # one pixel: patch (0, 1), channel 0*8+1
    patches = L.patchify_mask(mask)
    assert patches.shape == (1, 64, 2, 4)
    assert patches[0, :, 1, 0].eq(1).all()
    assert patches[0, 1, 0, 1] == 1 and patches[0, :, 0, 1].sum() == 1
