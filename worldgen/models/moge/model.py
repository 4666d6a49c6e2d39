"""The MoGe-1 network: DINOv2 ViT (transformers) → 4 intermediate layers → conv head → points + mask.

Head, per the published architecture: each of the last four normalised block outputs (patch
tokens only) goes through a 1×1 conv to `dim_proj` and they are summed; three upsampling stages
each concatenate a 2-channel normalised UV map, then ConvTranspose(2, 2) → conv3×3 (replicate
padding) → residual blocks; bilinear resize to the input size, UV again, and two output branches
(points: 3, mask: 1). Position embeddings are interpolated the way DINOv2/MoGe do it
(scale factor with a +0.1 offset), not the way transformers' Dinov2 does by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Dinov2Config, Dinov2Model
from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings

# DINOv2 hub names → (hidden size, depth, heads). `worldgen_tiny14` is the tiny twin's backbone.
ENCODERS: dict[str, tuple[int, int, int]] = {
    "dinov2_vits14": (384, 12, 6),
    "dinov2_vitb14": (768, 12, 12),
    "dinov2_vitl14": (1024, 24, 16),
    "worldgen_tiny14": (32, 4, 2),
}
PATCH = 14
PRETRAIN_GRID = 37  # 518 / 14: the grid the position embeddings were trained on
INTERPOLATE_OFFSET = 0.1


@dataclass
class MoGeConfig:
    """The checkpoint's `model_config` (unknown legacy keys are kept but unused)."""

    encoder: str = "dinov2_vitl14"
    intermediate_layers: int = 4
    dim_proj: int = 512
    dim_upsample: list[int] = field(default_factory=lambda: [256, 128, 64])
    dim_times_res_block_hidden: int = 2
    num_res_blocks: int = 2
    remap_output: str = "exp"
    num_tokens_range: list[int] = field(default_factory=lambda: [1200, 2500])
    last_res_blocks: int = 0
    last_conv_channels: int = 32
    last_conv_size: int = 1
    mask_threshold: float = 0.5
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MoGeConfig:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        values = {k: v for k, v in data.items() if k in known}
        if "trained_area_range" in data and "num_tokens_range" not in data:
            low, high = data["trained_area_range"]
            values["num_tokens_range"] = [low // PATCH**2, high // PATCH**2]
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "extra"}
        return {**self.extra, **data}

    def backbone_config(self) -> Dinov2Config:
        if self.encoder not in ENCODERS:
            raise ValueError(f"unsupported MoGe encoder {self.encoder!r}; known: {', '.join(ENCODERS)}")
        hidden, depth, heads = ENCODERS[self.encoder]
        return Dinov2Config(
            hidden_size=hidden,
            num_hidden_layers=depth,
            num_attention_heads=heads,
            mlp_ratio=4,
            patch_size=PATCH,
            image_size=PRETRAIN_GRID * PATCH,
            layerscale_value=1e-5,
            layer_norm_eps=1e-6,
            qkv_bias=True,
            use_swiglu_ffn=False,
            use_mask_token=True,
        )


class MoGeEmbeddings(Dinov2Embeddings):
    """Dinov2 embeddings with DINOv2's own position-embedding interpolation (scale factor + 0.1)."""

    def interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
        patches = embeddings.shape[1] - 1
        positions = self.position_embeddings.shape[1] - 1
        if patches == positions and height == width:
            return self.position_embeddings
        grid = int(math.sqrt(positions))
        h0, w0 = height // PATCH, width // PATCH
        table = self.position_embeddings.float()
        patch_table = table[:, 1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        scale = ((h0 + INTERPOLATE_OFFSET) / grid, (w0 + INTERPOLATE_OFFSET) / grid)
        patch_table = F.interpolate(patch_table, scale_factor=scale, mode="bicubic", antialias=False)
        patch_table = patch_table.permute(0, 2, 3, 1).flatten(1, 2)
        return torch.cat([table[:, :1], patch_table], dim=1).to(embeddings.dtype)


class ResidualConvBlock(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.GroupNorm(1, channels),
            nn.ReLU(),
            nn.Conv2d(channels, hidden, 3, padding=1, padding_mode="replicate"),
            nn.GroupNorm(max(hidden // 32, 1), hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 3, padding=1, padding_mode="replicate"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


def view_plane_uv(width: int, height: int, aspect: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(2, H, W) UV of pixel centres, spanning ±aspect/diag horizontally and ±1/diag vertically."""
    span_x = aspect / math.sqrt(1 + aspect**2)
    span_y = 1 / math.sqrt(1 + aspect**2)
    u = torch.linspace(-span_x * (width - 1) / width, span_x * (width - 1) / width, width, dtype=dtype, device=device)
    v = torch.linspace(
        -span_y * (height - 1) / height, span_y * (height - 1) / height, height, dtype=dtype, device=device
    )
    return torch.stack(torch.meshgrid(u, v, indexing="xy"), dim=0)


class MoGeHead(nn.Module):
    def __init__(self, config: MoGeConfig, dim_in: int) -> None:
        super().__init__()
        c = config
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, c.dim_proj, 1) for _ in range(c.intermediate_layers))
        widths_in = [c.dim_proj, *c.dim_upsample[:-1]]
        self.upsample_blocks = nn.ModuleList(
            nn.Sequential(
                nn.Sequential(
                    nn.ConvTranspose2d(w_in + 2, w_out, kernel_size=2, stride=2),
                    nn.Conv2d(w_out, w_out, 3, padding=1, padding_mode="replicate"),
                ),
                *(ResidualConvBlock(w_out, c.dim_times_res_block_hidden * w_out) for _ in range(c.num_res_blocks)),
            )
            for w_in, w_out in zip(widths_in, c.dim_upsample, strict=True)
        )
        self.output_block = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c.dim_upsample[-1] + 2, c.last_conv_channels, 3, padding=1, padding_mode="replicate"),
                *(
                    ResidualConvBlock(c.last_conv_channels, c.dim_times_res_block_hidden * c.last_conv_channels)
                    for _ in range(c.last_res_blocks)
                ),
                nn.ReLU(),
                nn.Conv2d(
                    c.last_conv_channels, out, c.last_conv_size, padding=c.last_conv_size // 2, padding_mode="replicate"
                ),
            )
            for out in (3, 1)
        )

    def forward(self, features: list[torch.Tensor], height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        patch_h, patch_w = height // PATCH, width // PATCH
        x = torch.stack(
            [
                proj(f.permute(0, 2, 1).unflatten(2, (patch_h, patch_w)))
                for proj, f in zip(self.projects, features, strict=True)
            ],
            dim=1,
        ).sum(dim=1)
        aspect = width / height
        for block in self.upsample_blocks:
            uv = view_plane_uv(x.shape[-1], x.shape[-2], aspect, x.dtype, x.device)
            x = block(torch.cat([x, uv.expand(x.shape[0], -1, -1, -1)], dim=1))
        x = F.interpolate(x, (height, width), mode="bilinear", align_corners=False)
        uv = view_plane_uv(width, height, aspect, x.dtype, x.device)
        x = torch.cat([x, uv.expand(x.shape[0], -1, -1, -1)], dim=1)
        points, mask = (branch(x) for branch in self.output_block)
        return points, mask


class MoGeModel(nn.Module):
    def __init__(self, config: MoGeConfig) -> None:
        super().__init__()
        self.config = config
        backbone_config = config.backbone_config()
        self.backbone = Dinov2Model(backbone_config)
        self.backbone.embeddings = MoGeEmbeddings(backbone_config)
        self.head = MoGeHead(config, backbone_config.hidden_size)
        self.image_mean: torch.Tensor
        self.image_std: torch.Tensor
        self.register_buffer("image_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    @property
    def device(self) -> torch.device:
        return self.image_mean.device

    def forward(self, image: torch.Tensor, num_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, H, W) in [0, 1] → points (B, H, W, 3) and mask logits (B, H, W)."""
        height, width = image.shape[-2:]
        factor = math.sqrt(num_tokens * PATCH**2 / (height * width))
        resized_h, resized_w = int(height * factor), int(width * factor)
        x = F.interpolate(image, (resized_h, resized_w), mode="bicubic", align_corners=False, antialias=True)
        x = (x - self.image_mean) / self.image_std
        x14 = F.interpolate(
            x, (resized_h // PATCH * PATCH, resized_w // PATCH * PATCH), mode="bilinear", align_corners=False,
            antialias=True,
        )  # fmt: skip
        hidden = self.backbone(pixel_values=x14, output_hidden_states=True).hidden_states
        features = [self.backbone.layernorm(h)[:, 1:] for h in hidden[-self.config.intermediate_layers :]]
        points, mask = self.head(features, resized_h, resized_w)
        points = F.interpolate(points.float(), (height, width), mode="bilinear", align_corners=False)
        mask = F.interpolate(mask.float(), (height, width), mode="bilinear", align_corners=False)
        return self._remap(points.permute(0, 2, 3, 1)), mask[:, 0]

    def _remap(self, points: torch.Tensor) -> torch.Tensor:
        mode = self.config.remap_output
        if mode in ("linear", False):
            return points
        if mode == "exp":
            xy, z = points.split([2, 1], dim=-1)
            z = torch.exp(z)
            return torch.cat([xy * z, z], dim=-1)
        if mode == "sinh":
            return torch.sinh(points)
        if mode == "sinh_exp":
            xy, z = points.split([2, 1], dim=-1)
            return torch.cat([torch.sinh(xy), torch.exp(z)], dim=-1)
        raise ValueError(f"unknown remap_output {mode!r}")
