"""MoGe-1 in our code: the reference checkpoint layout at full size, tiny twins, interpolation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from worldgen.models.moge.checkpoint import from_reference, load_moge, save_moge, to_reference
from worldgen.models.moge.inference import predict_distance, solve_shift
from worldgen.models.moge.model import MoGeConfig, MoGeModel

D = 1024  # ViT-L width


def _res_block(prefix: str, width: int) -> dict[str, tuple[int, ...]]:
    hidden = 2 * width
    return {
        f"{prefix}.layers.0.weight": (width,), f"{prefix}.layers.0.bias": (width,),
        f"{prefix}.layers.2.weight": (hidden, width, 3, 3), f"{prefix}.layers.2.bias": (hidden,),
        f"{prefix}.layers.3.weight": (hidden,), f"{prefix}.layers.3.bias": (hidden,),
        f"{prefix}.layers.5.weight": (width, hidden, 3, 3), f"{prefix}.layers.5.bias": (width,),
    }  # fmt: skip


def reference_layout() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the published Ruicheng/moge-vitl checkpoint (421 entries, 314.2 M params)."""
    expected: dict[str, tuple[int, ...]] = {
        "image_mean": (1, 3, 1, 1), "image_std": (1, 3, 1, 1),
        "backbone.cls_token": (1, 1, D), "backbone.pos_embed": (1, 37 * 37 + 1, D), "backbone.mask_token": (1, D),
        "backbone.patch_embed.proj.weight": (D, 3, 14, 14), "backbone.patch_embed.proj.bias": (D,),
        "backbone.norm.weight": (D,), "backbone.norm.bias": (D,),
    }  # fmt: skip
    for i in range(24):
        b = f"backbone.blocks.{i}"
        expected |= {
            f"{b}.norm1.weight": (D,), f"{b}.norm1.bias": (D,),
            f"{b}.attn.qkv.weight": (3 * D, D), f"{b}.attn.qkv.bias": (3 * D,),
            f"{b}.attn.proj.weight": (D, D), f"{b}.attn.proj.bias": (D,), f"{b}.ls1.gamma": (D,),
            f"{b}.norm2.weight": (D,), f"{b}.norm2.bias": (D,),
            f"{b}.mlp.fc1.weight": (4 * D, D), f"{b}.mlp.fc1.bias": (4 * D,),
            f"{b}.mlp.fc2.weight": (D, 4 * D), f"{b}.mlp.fc2.bias": (D,), f"{b}.ls2.gamma": (D,),
        }  # fmt: skip
    for i in range(4):
        expected |= {f"head.projects.{i}.weight": (512, D, 1, 1), f"head.projects.{i}.bias": (512,)}
    for i, (w_in, w_out) in enumerate([(512, 256), (256, 128), (128, 64)]):
        u = f"head.upsample_blocks.{i}"
        expected |= {
            f"{u}.0.0.weight": (w_in + 2, w_out, 2, 2), f"{u}.0.0.bias": (w_out,),
            f"{u}.0.1.weight": (w_out, w_out, 3, 3), f"{u}.0.1.bias": (w_out,),
        }  # fmt: skip
        expected |= _res_block(f"{u}.1", w_out) | _res_block(f"{u}.2", w_out)
    for branch, channels in ((0, 3), (1, 1)):
        o = f"head.output_block.{branch}"
        expected |= {
            f"{o}.0.weight": (32, 66, 3, 3), f"{o}.0.bias": (32,),
            f"{o}.2.weight": (channels, 32, 1, 1), f"{o}.2.bias": (channels,),
        }  # fmt: skip
    return expected


def test_full_size_model_has_the_reference_layout() -> None:
    with torch.device("meta"):
        model = MoGeModel(MoGeConfig())
    state = to_reference(model.state_dict())
    expected = reference_layout()
    assert len(expected) == 421
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    params = sum(v.numel() for k, v in state.items() if not k.startswith("image_"))
    assert round(params / 1e6, 1) == 314.2
    assert set(from_reference(state)) == set(model.state_dict())


def test_qkv_split_order_roundtrip() -> None:
    qkv = torch.arange(3 * 4 * 2, dtype=torch.float32).reshape(12, 2)
    ours = from_reference({"backbone.blocks.0.attn.qkv.weight": qkv})
    assert torch.equal(ours["backbone.encoder.layer.0.attention.q_proj.weight"], qkv[:4])
    assert torch.equal(ours["backbone.encoder.layer.0.attention.v_proj.weight"], qkv[8:])
    assert torch.equal(to_reference(ours)["backbone.blocks.0.attn.qkv.weight"], qkv)


def test_tiny_checkpoint_loads_and_runs(tiny_models: Path) -> None:
    path = tiny_models / "Ruicheng/moge-vitl/model.pt"
    checkpoint = torch.load(path, weights_only=True)
    assert set(checkpoint) == {"model_config", "model"}
    assert "backbone.blocks.0.attn.qkv.weight" in checkpoint["model"]
    model = load_moge(path, torch.device("cpu"))
    images = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    distance, mask = predict_distance(model, images, fov_x_deg=90.0)
    assert distance.shape == mask.shape == (2, 96, 128)
    assert torch.isfinite(distance).all() and (distance[mask] > 0).all() and mask.any()


def test_checkpoint_roundtrip(tmp_path: Path) -> None:
    config = MoGeConfig(encoder="worldgen_tiny14", dim_proj=8, dim_upsample=[32, 32, 32], last_conv_channels=4)
    model = MoGeModel(config).eval()
    save_moge(model, tmp_path / "model.pt")
    loaded = load_moge(tmp_path / "model.pt", torch.device("cpu"))
    image = torch.rand(1, 3, 70, 70)
    torch.testing.assert_close(loaded(image, 25)[0], model(image, 25)[0])


def test_rejects_a_foreign_checkpoint(tmp_path: Path) -> None:
    torch.save({"model_config": {"encoder": "dinov2_vits14"}, "model": {"x": torch.zeros(1)}}, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="not a MoGe-1 checkpoint"):
        load_moge(tmp_path / "m.pt", torch.device("cpu"))


def test_position_embeddings_use_dinov2_interpolation() -> None:
    """scale_factor = ((h0 + 0.1)/37, (w0 + 0.1)/37), bicubic, no antialias — not transformers' size=."""
    model = MoGeModel(MoGeConfig(encoder="worldgen_tiny14")).eval()
    embeddings = model.backbone.embeddings
    h0, w0 = 30, 57  # a non-square grid
    table = embeddings.position_embeddings
    patch = table[:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    expected = F.interpolate(patch, scale_factor=((h0 + 0.1) / 37, (w0 + 0.1) / 37), mode="bicubic")
    expected = expected.permute(0, 2, 3, 1).flatten(1, 2)
    ours = embeddings.interpolate_pos_encoding(torch.zeros(1, h0 * w0 + 1, 32), h0 * 14, w0 * 14)
    torch.testing.assert_close(ours[:, 1:], expected)
    by_size = F.interpolate(patch, size=(h0, w0), mode="bicubic").permute(0, 2, 3, 1).flatten(1, 2)
    assert (ours[:, 1:] - by_size).abs().max() > 1e-3  # transformers' default would differ


def test_shift_solve_recovers_a_known_shift() -> None:
    height = width = 64
    focal = 1 / math.sqrt(2)  # 90° on a square image
    u = (torch.arange(width) + 0.5) / width * 2 - 1
    v = (torch.arange(height) + 0.5) / height * 2 - 1
    uu, vv = torch.meshgrid(u, v, indexing="xy")
    span = 1 / math.sqrt(2)  # the view-plane UV of a square image spans ±1/√2 (pixel centres)
    depth = 2.0 + 0.3 * torch.sin(uu * 3)
    xy = torch.stack([uu, vv], dim=-1) * span / focal * depth[..., None]
    true_shift = 0.7
    points = torch.cat([xy, (depth - true_shift)[..., None]], dim=-1)[None]
    shift = solve_shift(points, torch.ones(1, height, width, dtype=torch.bool), focal)
    assert abs(float(shift[0]) - true_shift) < 1e-2
