"""Latent-space helpers: noise convention, 2×2 token packing, RoPE ids and the wrap-around seam.

A FLUX latent grid is (B, 16, h, w) with h = H/8, w = W/8. The transformer sees 2×2 patches
packed into tokens of 64 channels. For panoramas the grid is extended on the right by copies of
its first `extend` columns, so the model denoises across the wrap; blending the left columns from
those copies ties both sides of the seam together.
"""

from __future__ import annotations

import torch

LATENT_CHANNELS = 16
VAE_SCALE = 8
SEAM_EXTEND = 6
"""Latent columns appended on the right (the reference's `blend_extend`)."""
SEAM_BLEND_LAST_STEP_PANORAMA = 3
"""Text → panorama and image → panorama blend the seam after the scheduler step at steps 0..3
inclusive: both reference pipelines pass `early_steps=3` to the loop's `i <= early_steps` test."""
SEAM_BLEND_LAST_STEP_INPAINT = 4
"""Layer inpainting (Fill + PanoInpaint-Scene/Sky) blends after steps 0..4: the reference's Fill
calls pass no `early_steps`, so the loop's default of 4 applies. Each pipeline adds one final blend."""


def latent_size(height: int, width: int) -> tuple[int, int]:
    """Latent grid for an image size (packing needs even latent sides, so sizes are multiples of 16)."""
    return 2 * (height // (VAE_SCALE * 2)), 2 * (width // (VAE_SCALE * 2))


def initial_noise(seed: int, batch: int, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """The reference's noise draw: ONE `torch.randn` on a CPU generator, in the model dtype.

    Drawn before the seam extension, so the same seed gives the same panorama as the reference.
    """
    h, w = latent_size(height, width)
    generator = torch.Generator("cpu").manual_seed(seed)
    return torch.randn((batch, LATENT_CHANNELS, h, w), generator=generator, dtype=dtype)


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) → (B, h/2·w/2, 4C): each token holds a 2×2 patch, channel-major."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of `pack` for a latent grid of h × w."""
    b, _, c4 = tokens.shape
    x = tokens.view(b, h // 2, w // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c4 // 4, h, w)


def image_ids(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """RoPE ids (0, row, col) per token for a latent grid of h × w (no wrap in the ids)."""
    rows = torch.arange(h // 2, dtype=dtype, device=device)[:, None].expand(h // 2, w // 2)
    cols = torch.arange(w // 2, dtype=dtype, device=device)[None, :].expand(h // 2, w // 2)
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3)


def extend_seam(grid: torch.Tensor, extend: int) -> torch.Tensor:
    """Append copies of the first `extend` columns on the right (any channel count)."""
    return torch.cat([grid, grid[..., :extend]], dim=-1) if extend else grid


def blend_seam(grid: torch.Tensor, extend: int) -> torch.Tensor:
    """Overwrite the left `extend` columns with a ramp from the right-hand copies.

    Column x (0 ≤ x < extend) becomes (1 − x/extend)·grid[..., W0 + x] + (x/extend)·grid[..., x],
    where W0 = width − extend is the unextended width. Returns a new tensor.
    """
    if not extend:
        return grid
    width = grid.shape[-1]
    # Same arithmetic as the reference: each product rounded to the grid's dtype, then the sum.
    keep = torch.tensor([x / extend for x in range(extend)], dtype=torch.float32, device=grid.device)
    take = torch.tensor([1 - x / extend for x in range(extend)], dtype=torch.float32, device=grid.device)
    from_right = (grid[..., width - extend :].float() * take).to(grid.dtype)
    from_left = (grid[..., :extend].float() * keep).to(grid.dtype)
    out = grid.clone()
    out[..., :extend] = (from_right.float() + from_left.float()).to(grid.dtype)
    return out


def patchify_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) pixel mask → (B, 64, H/8, W/8): each 8×8 pixel patch becomes 64 channels."""
    b, _, height, width = mask.shape
    h, w = height // VAE_SCALE, width // VAE_SCALE
    x = mask[:, 0].reshape(b, h, VAE_SCALE, w, VAE_SCALE).permute(0, 2, 4, 1, 3)
    return x.reshape(b, VAE_SCALE * VAE_SCALE, h, w)
