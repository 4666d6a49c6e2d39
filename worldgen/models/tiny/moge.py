"""A tiny MoGe-1 twin written as the official `model.pt` ({"model_config", "model"}, reference keys).

The weights are random, but the points branch is wired to reproduce the view-plane UV it is
given, so the twin predicts a plausible plane at depth ≈ 1 (plus noise) and the shift solve and
the fusion downstream see valid geometry.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch

from worldgen.models.moge.checkpoint import to_reference
from worldgen.models.moge.inference import focal_from_fov
from worldgen.models.moge.model import MoGeConfig, MoGeModel
from worldgen.models.tiny.random import randomize
from worldgen.models.tiny.serialization import save_deterministic

TINY_CONFIG = MoGeConfig(
    encoder="worldgen_tiny14",
    intermediate_layers=4,
    dim_proj=16,
    dim_upsample=[16, 16, 16],
    dim_times_res_block_hidden=2,
    num_res_blocks=2,
    remap_output="exp",
    num_tokens_range=[64, 100],
    last_conv_channels=8,
)


def tiny_moge(generator: torch.Generator) -> MoGeModel:
    model = MoGeModel(TINY_CONFIG)
    randomize(model, generator)
    return wire_points_to_uv(model)


def wire_points_to_uv(model: MoGeModel) -> MoGeModel:
    """Make a random-weight MoGe (any size) predict a noisy plane at depth ≈ 1 with mostly valid
    pixels, so fusion and meshing downstream work on plausible geometry."""
    points, mask = (cast(torch.nn.Sequential, head) for head in model.head.output_block)  # points, mask heads
    first, last = cast(torch.nn.Conv2d, points[0]), cast(torch.nn.Conv2d, points[-1])
    mask_out = cast(torch.nn.Conv2d, mask[-1])
    assert first.bias is not None and last.bias is not None and mask_out.bias is not None
    with torch.no_grad():
        channels = first.in_channels - 2  # the last two input channels are the UV map
        focal = focal_from_fov(90.0, 1.0)
        for axis in (0, 1):  # hidden channel `axis` = uv[axis] + 1 (positive, so ReLU passes it)
            first.weight[axis] *= 0.01
            first.weight[axis, channels + axis, 1, 1] = 1.0
            first.bias[axis] = 1.0
            last.weight[axis] *= 0.01
            last.weight[axis, axis, 0, 0] = 1.0 / focal  # xy ≈ uv / focal at z ≈ 1
            last.bias[axis] = -1.0 / focal
        last.weight[2] *= 0.1  # log z ≈ 0
        last.bias[2] = 0.0
        mask_out.bias.fill_(2.0)  # mostly valid pixels
    return model


def write_moge(path: Path, generator: torch.Generator) -> None:
    model = tiny_moge(generator)
    state = {k: v.detach().contiguous() for k, v in to_reference(model.state_dict()).items()}
    save_deterministic({"model_config": model.config.to_dict(), "model": state}, path)
