"""A tiny Real-ESRGAN x2plus twin: basicsr key names in `{"params_ema": ...}`, a 12-channel
`conv_first` for the ×2 model's pixel-unshuffled input, growth channels fixed at 32 (spandrel
detects the architecture from these shapes).

Pure noise weights would output a flat black image and hide every downstream mistake, so the
trunk convolutions also carry an identity on their centre tap: the twin upscales like a (bad)
super-resolution model — colours and layout survive, plus the random residual body's noise."""

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
        std = 0.05 if name.startswith("body.") else 0.01  # a quieter trunk, so the colours carry
        state[f"{name}.weight"] = torch.randn(out_channels, in_channels, 3, 3, generator=generator) * std
        state[f"{name}.bias"] = torch.randn(out_channels, generator=generator) * 0.01
    _carry_colours(state)
    return state


def _carry_colours(state: dict[str, torch.Tensor]) -> None:
    """RGB rides through feature channels 0..2: conv_first averages each colour's four
    pixel-unshuffled sub-pixels (channel c·4 + k); the later trunk convolutions pass them on
    (colours are ≥ 0, so the leaky ReLUs between them keep them)."""
    for colour in range(3):
        state["conv_first.weight"][colour, colour * 4 : colour * 4 + 4, 1, 1] += 0.25
        for name in ("conv_up1", "conv_up2", "conv_hr", "conv_last"):
            state[f"{name}.weight"][colour, colour, 1, 1] += 1.0


def write_esrgan(path: Path, generator: torch.Generator) -> None:
    save_deterministic({"params_ema": esrgan_state(generator)}, path)
