"""Reading HunyuanWorld LoRAs and turning them into weight deltas.

Any key format diffusers' FLUX LoRA loader understands (diffusers/peft, kohya, xlabs, ...) is
accepted: we let `FluxLoraLoaderMixin.lora_state_dict` normalise it, then fuse ourselves while the
base weights stream in (see `transformer.load_transformer`), so no second copy of the transformer
and no peft wrappers are ever needed for a fused LoRA.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from worldgen.errors import ModelMissing

LORA_FILE = "lora.safetensors"


@dataclass(frozen=True)
class LoraFactor:
    down: torch.Tensor  # A: (rank, in_features)
    up: torch.Tensor  # B: (out_features, rank)
    scale: float

    def delta(self, device: torch.device) -> torch.Tensor:
        """scale · B @ A in float32 on `device`."""
        up = self.up.to(device=device, dtype=torch.float32)
        down = self.down.to(device=device, dtype=torch.float32)
        return (up @ down) * self.scale


@dataclass(frozen=True)
class LoraWeights:
    name: str
    factors: dict[str, LoraFactor]
    """Keyed by the adapted parameter's name in the transformer, e.g. `transformer_blocks.0.attn.to_q.weight`."""

    @property
    def rank(self) -> int:
        return max(f.down.shape[0] for f in self.factors.values())


def read_lora(folder: Path, name: str | None = None) -> LoraWeights:
    """Load `folder/lora.safetensors` into per-parameter factors (CPU tensors)."""
    from diffusers.loaders import FluxLoraLoaderMixin

    path = folder / LORA_FILE
    if not path.is_file():
        raise ModelMissing(f"LoRA file not found: {path}")
    state, alphas = FluxLoraLoaderMixin.lora_state_dict(
        str(folder), weight_name=LORA_FILE, return_alphas=True, local_files_only=True
    )
    alphas = alphas or {}
    modules = sorted({k.rsplit(".lora_", 1)[0] for k in state if ".lora_A." in k})
    foreign = [k for k in state if not k.startswith("transformer.")]
    if foreign or not modules:
        raise ValueError(f"{path}: not a FLUX transformer LoRA (unexpected keys such as {foreign[:2]})")
    factors = {}
    for module in modules:
        down = state[f"{module}.lora_A.weight"]
        up = state[f"{module}.lora_B.weight"]
        alpha = alphas.get(f"{module}.alpha", alphas.get(module.removeprefix("transformer.") + ".alpha"))
        scale = float(alpha) / down.shape[0] if alpha is not None else 1.0
        factors[module.removeprefix("transformer.") + ".weight"] = LoraFactor(down, up, scale)
    return LoraWeights(name=name or folder.name, factors=factors)
