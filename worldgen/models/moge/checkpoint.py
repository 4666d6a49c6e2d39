"""The official MoGe-1 checkpoint format: `model.pt` = {"model_config": {...}, "model": state_dict}
with the reference repository's key names (DINOv2 hub naming for the backbone).

We map those names onto transformers' Dinov2 naming, splitting the fused `attn.qkv` into q, k, v
(in that order along dim 0), and back (for writing tiny twins in the same format).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from worldgen.models.moge.model import MoGeConfig, MoGeModel

_BACKBONE_RENAMES = {
    "backbone.cls_token": "backbone.embeddings.cls_token",
    "backbone.pos_embed": "backbone.embeddings.position_embeddings",
    "backbone.mask_token": "backbone.embeddings.mask_token",
    "backbone.patch_embed.proj.weight": "backbone.embeddings.patch_embeddings.projection.weight",
    "backbone.patch_embed.proj.bias": "backbone.embeddings.patch_embeddings.projection.bias",
    "backbone.norm.weight": "backbone.layernorm.weight",
    "backbone.norm.bias": "backbone.layernorm.bias",
}
_BLOCK_RENAMES = {
    "norm1": "norm1",
    "attn.proj": "attention.o_proj",
    "ls1.gamma": "layer_scale1.lambda1",
    "norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "ls2.gamma": "layer_scale2.lambda1",
}
_BLOCK = re.compile(r"^backbone\.blocks\.(\d+)\.(.+)$")


def from_reference(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reference key names → ours."""
    ours: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _BACKBONE_RENAMES:
            ours[_BACKBONE_RENAMES[key]] = value
            continue
        match = _BLOCK.match(key)
        if match is None:
            ours[key] = value  # head.*, image_mean, image_std: same names
            continue
        index, rest = match.groups()
        prefix = f"backbone.encoder.layer.{index}."
        if rest.startswith("attn.qkv."):
            kind = rest.rsplit(".", 1)[1]
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0), strict=True):
                ours[f"{prefix}attention.{name}.{kind}"] = part.clone()
            continue
        for old, new in _BLOCK_RENAMES.items():
            if rest == old or rest.startswith(old + "."):
                ours[prefix + new + rest[len(old) :]] = value
                break
        else:
            raise KeyError(f"unexpected MoGe checkpoint key {key!r}")
    return ours


def to_reference(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our key names → the reference's (inverse of `from_reference`)."""
    renamed = {new: old for old, new in _BACKBONE_RENAMES.items()}
    reference: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key in renamed:
            reference[renamed[key]] = value
            continue
        match = re.match(r"^backbone\.encoder\.layer\.(\d+)\.(.+)$", key)
        if match is None:
            reference[key] = value
            continue
        index, rest = match.groups()
        qkv_match = re.match(r"^attention\.([qkv])_proj\.(weight|bias)$", rest)
        if qkv_match:
            qkv.setdefault((index, qkv_match.group(2)), {})[qkv_match.group(1)] = value
            continue
        for old, new in _BLOCK_RENAMES.items():
            if rest == new or rest.startswith(new + "."):
                reference[f"backbone.blocks.{index}.{old}{rest[len(new) :]}"] = value
                break
        else:
            raise KeyError(f"unexpected MoGe parameter {key!r}")
    for (index, kind), parts in qkv.items():
        reference[f"backbone.blocks.{index}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return reference


def load_moge(path: Path, device: torch.device, dtype: torch.dtype = torch.float32) -> MoGeModel:
    """Build MoGe from an official-format `model.pt` (weights only; no pickled code is run)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    config = MoGeConfig.from_dict(checkpoint["model_config"])
    with torch.device("meta"):
        model = MoGeModel(config)
    state = from_reference(checkpoint["model"])
    missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
    if missing or unexpected:
        raise ValueError(
            f"{path}: not a MoGe-1 checkpoint for encoder {config.encoder}: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}"
        )
    model.load_state_dict(state, assign=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def save_moge(model: MoGeModel, path: Path) -> None:
    """Write `model` as an official-format `model.pt`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in to_reference(model.state_dict()).items()}
    torch.save({"model_config": model.config.to_dict(), "model": state}, path)
