"""Tiny HunyuanWorld LoRAs in diffusers' FLUX LoRA key format (`transformer.<module>.lora_A/B.weight`)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from safetensors.torch import save_file

# Linear layers the LoRAs adapt, relative to a block (double-stream / single-stream).
DOUBLE_BLOCK_TARGETS = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
    "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
)  # fmt: skip
SINGLE_BLOCK_TARGETS = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp", "proj_out")


def lora_targets(transformer: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """The linear modules of a FLUX transformer that a HunyuanWorld LoRA adapts."""
    modules = dict(transformer.named_modules())
    targets: dict[str, torch.nn.Linear] = {}
    double = cast(torch.nn.ModuleList, transformer.get_submodule("transformer_blocks"))
    single = cast(torch.nn.ModuleList, transformer.get_submodule("single_transformer_blocks"))
    for index in range(len(double)):
        for suffix in DOUBLE_BLOCK_TARGETS:
            targets[f"transformer_blocks.{index}.{suffix}"] = modules[f"transformer_blocks.{index}.{suffix}"]
    for index in range(len(single)):
        for suffix in SINGLE_BLOCK_TARGETS:
            name = f"single_transformer_blocks.{index}.{suffix}"
            targets[name] = modules[name]
    return targets


def write_lora(path: Path, transformer: torch.nn.Module, *, rank: int, generator: torch.Generator) -> None:
    """Random LoRA (both factors non-zero, so it visibly changes the output) for `transformer`."""
    state: dict[str, torch.Tensor] = {}
    for name, linear in sorted(lora_targets(transformer).items()):
        down = torch.randn(rank, linear.in_features, generator=generator) * 0.3
        up = torch.randn(linear.out_features, rank, generator=generator) * 0.3
        state[f"transformer.{name}.lora_A.weight"] = down.to(torch.bfloat16)
        state[f"transformer.{name}.lora_B.weight"] = up.to(torch.bfloat16)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "pt"})
