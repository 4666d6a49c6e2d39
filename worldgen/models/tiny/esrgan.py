"""A tiny Real-ESRGAN x2plus twin: basicsr key names in `{"params_ema": ...}`, a 12-channel
`conv_first` for the ×2 model's pixel-unshuffled input, growth channels fixed at 32 (spandrel
detects the architecture from these shapes)."""

from __future__ import annotations

from pathlib import Path

import torch

from worldgen.models.tiny.serialization import save_deterministic

FEATURES, GROWTH, BLOCKS = 4, 32, 1


def esrgan_state(generator: torch.Generator, nf: int = FEATURES, blocks: int = BLOCKS) -> dict[str, torch.Tensor]:
    shapes: dict[str, tuple[int, int]] = {"conv_first": (nf, 3 * 4)}
    for block in range(blocks):
        for rdb in (1, 2, 3):
            prefix = f"body.{block}.rdb{rdb}"
            for index in range(1, 5):
                shapes[f"{prefix}.conv{index}"] = (GROWTH, nf + (index - 1) * GROWTH)
            shapes[f"{prefix}.conv5"] = (nf, nf + 4 * GROWTH)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        shapes[name] = (nf, nf)
    shapes["conv_last"] = (3, nf)
    state = {}
    for name, (out_channels, in_channels) in shapes.items():
        state[f"{name}.weight"] = torch.randn(out_channels, in_channels, 3, 3, generator=generator) * 0.05
        state[f"{name}.bias"] = torch.randn(out_channels, generator=generator) * 0.01
    return state


def write_esrgan(path: Path, generator: torch.Generator) -> None:
    save_deterministic({"params_ema": esrgan_state(generator)}, path)
