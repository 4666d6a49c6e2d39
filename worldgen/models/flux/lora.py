"""Reading HunyuanWorld LoRAs and turning them into weight deltas.

The reference loads these files with diffusers' `load_lora_weights` + `fuse_lora`, and their key
naming is not published, so we accept exactly what that path accepts and scale exactly as it does:
diffusers converts the keys (`FluxLoraLoaderMixin.lora_state_dict`: diffusers/peft, kohya, xlabs,
fal; `convert_unet_state_dict_to_peft`: `.lora.down/.up`), builds the peft `LoraConfig` (from
`.alpha` entries or the file's `lora_adapter_metadata`), and peft's rank/alpha patterns give each
module its scale. We then fuse ourselves while the base weights stream in (see
`transformer.load_transformer`), so no second copy of the transformer and no peft wrappers exist.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from worldgen.errors import ModelMissing

log = logging.getLogger("worldgen.models")

LORA_FILE = "lora.safetensors"
TRANSFORMER_PREFIX = "transformer."
TEXT_ENCODER_PREFIX = "text_encoder."  # CLIP; diffusers' FLUX loader has no LoRA path into T5
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<factor>[AB])\.(?P<kind>weight|bias)$")


@dataclass(frozen=True)
class LoraFactor:
    down: torch.Tensor  # A: (rank, in_features)
    up: torch.Tensor  # B: (out_features, rank)
    scale: float
    bias: torch.Tensor | None = None
    """B's bias (`lora_B.bias`, out_features): peft adds scale · bias to the layer's bias when fusing."""

    def delta(self, device: torch.device) -> torch.Tensor:
        """scale · B @ A in float32 on `device`."""
        up = self.up.to(device=device, dtype=torch.float32)
        down = self.down.to(device=device, dtype=torch.float32)
        return (up @ down) * self.scale

    def bias_delta(self, device: torch.device) -> torch.Tensor:
        """scale · bias in float32 on `device` (zero when the LoRA has no bias)."""
        if self.bias is None:
            return torch.zeros(self.up.shape[0], device=device)
        return self.bias.to(device=device, dtype=torch.float32) * self.scale

    def widened(self, in_features: int) -> LoraFactor:
        """This factor for a layer with more inputs, zero on the extra ones — what diffusers does when
        a LoRA trained on FLUX.1-dev (x_embedder: 64 inputs) goes into FLUX.1-Fill-dev (384)."""
        rank, current = self.down.shape
        if current == in_features:
            return self
        if current > in_features:
            raise ValueError(f"LoRA factor has {current} inputs, the layer only {in_features}")
        down = torch.cat([self.down, self.down.new_zeros(rank, in_features - current)], dim=1)
        return dataclasses.replace(self, down=down)


@dataclass(frozen=True)
class LoraWeights:
    name: str
    factors: dict[str, LoraFactor]
    """Keyed by the adapted parameter's name in the transformer, e.g. `transformer_blocks.0.attn.to_q.weight`."""

    @property
    def rank(self) -> int:
        return max(f.down.shape[0] for f in self.factors.values())


Delta = Callable[[torch.device], torch.Tensor]


def fusion_deltas(loras: Sequence[LoraWeights], shapes: Mapping[str, torch.Size]) -> dict[str, list[Delta]]:
    """Tensor name → the float32 deltas the LoRAs add to it (weights and, for `lora_B.bias`, biases),
    checked against the transformer's tensor `shapes` so a mismatched LoRA fails before any loading."""
    deltas: dict[str, list[Delta]] = defaultdict(list)
    for lora in loras:
        for name, factor in lora.factors.items():
            bias_name = name.removesuffix(".weight") + ".bias"
            if name not in shapes or (factor.bias is not None and bias_name not in shapes):
                raise ValueError(f"LoRA {lora.name!r} adapts {name!r}, which this transformer does not have")
            out_features, in_features = shapes[name]
            if factor.up.shape[0] != out_features or factor.down.shape[1] > in_features:
                raise ValueError(
                    f"LoRA {lora.name!r}: {name} is {tuple(shapes[name])} in this transformer, the LoRA's "
                    f"factors give {(factor.up.shape[0], factor.down.shape[1])}"
                )
            factor = factor.widened(in_features)
            deltas[name].append(partial(LoraFactor.delta, factor))
            if factor.bias is not None:
                deltas[bias_name].append(partial(LoraFactor.bias_delta, factor))
    return dict(deltas)


def apply_deltas(tensor: torch.Tensor, deltas: Sequence[Delta]) -> torch.Tensor:
    """`tensor` plus `deltas`, summed in float32 (peft fuses in the weights' dtype; ours is float32
    before the final cast, so a bf16 model is rounded once, not once per LoRA)."""
    if not deltas:
        return tensor
    tensor = tensor.to(torch.float32)
    for delta in deltas:
        tensor += delta(tensor.device)
    return tensor


def read_lora(folder: Path, name: str | None = None) -> LoraWeights:
    """Load `folder/lora.safetensors` into per-parameter factors (CPU tensors), scaled as diffusers'
    `load_lora_weights` + `fuse_lora` scale them."""
    from diffusers.loaders import FluxLoraLoaderMixin

    path = folder / LORA_FILE
    if not path.is_file():
        raise ModelMissing(f"LoRA file not found: {path}")
    state, alphas, metadata = FluxLoraLoaderMixin.lora_state_dict(
        str(folder), weight_name=LORA_FILE, return_alphas=True, return_lora_metadata=True, local_files_only=True
    )
    text = sorted(k for k in state if k.startswith(TEXT_ENCODER_PREFIX))
    if text:
        raise ValueError(
            f"{path}: has text-encoder (CLIP) LoRA weights, which diffusers would load into the text encoder: "
            f"{len(text)} tensors, e.g. {text[:3]}. worldgen fuses LoRAs into the FLUX transformer only, so "
            "its prompt encoding would differ from diffusers'."
        )
    ignored = sorted(k for k in state if not k.startswith(TRANSFORMER_PREFIX))
    if len(ignored) == len(state):
        raise ValueError(f"{path}: not a FLUX transformer LoRA (keys such as {ignored[:3]})")
    if ignored:  # e.g. kohya's img_in/txt_in/time_in/final_layer, which diffusers converts without the prefix
        log.warning(
            "%s: ignoring %d tensors outside the transformer, as diffusers does: %s", path, len(ignored), ignored
        )
    if alphas and metadata:
        raise ValueError(f"{path}: has both `.alpha` tensors and `lora_adapter_metadata`; diffusers refuses that too")
    state = {k.removeprefix(TRANSFORMER_PREFIX): v for k, v in state.items() if k.startswith(TRANSFORMER_PREFIX)}
    alphas = {
        k.removeprefix(TRANSFORMER_PREFIX): v for k, v in (alphas or {}).items() if k.startswith(TRANSFORMER_PREFIX)
    }
    if metadata is not None:
        metadata = {
            k.removeprefix(TRANSFORMER_PREFIX): v for k, v in metadata.items() if k.startswith(TRANSFORMER_PREFIX)
        }
        if not metadata:
            raise ValueError(f"{path}: its `lora_adapter_metadata` has no transformer entries")
    factors = _factors(path, state, alphas, metadata)
    return LoraWeights(name=name or folder.name, factors=factors)


def _factors(
    path: Path, state: dict[str, torch.Tensor], alphas: dict[str, Any], metadata: dict[str, Any] | None
) -> dict[str, LoraFactor]:
    """peft-format factors with peft's per-module scale (`load_lora_adapter`'s steps, without a model)."""
    from diffusers.utils.peft_utils import _create_lora_config
    from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft
    from peft.tuners.tuners_utils import check_target_module_exists
    from peft.utils.other import get_pattern_key

    if "lora_A" not in next(iter(state)):  # diffusers decides on the first key, so do we
        state = convert_unet_state_dict_to_peft(state)
    parts: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, tensor in state.items():
        match = _LORA_KEY.match(key)
        if match is None or (match["factor"], match["kind"]) == ("A", "bias"):
            raise ValueError(
                f"{path}: {key!r} is not a plain LoRA factor (DoRA magnitudes, Control-LoRA norm layers and "
                "full-weight tensors are not supported)"
            )
        parts[match["module"]][f"{match['factor']}.{match['kind']}"] = tensor
    ranks = {f"^{key}": t.shape[1] for key, t in state.items() if "lora_B" in key and t.ndim > 1}
    config = _create_lora_config(state, alphas, metadata, ranks)
    if config.target_modules is None:
        raise ValueError(f"{path}: its `lora_adapter_metadata` names no target modules")
    variants = [
        f.name
        for f in dataclasses.fields(config)
        if (f.metadata.get("is_lora_variant") and getattr(config, f.name))
        or config.init_lora_weights in f.metadata.get("lora_variants", ())
    ]
    if variants:
        raise ValueError(f"{path}: LoRA variant {variants} is not supported, only plain LoRA")
    factors = {}
    for module, part in sorted(parts.items()):
        if "A.weight" not in part or "B.weight" not in part:
            raise ValueError(f"{path}: {module} lacks lora_A or lora_B")
        if not check_target_module_exists(config, module):
            raise ValueError(f"{path}: {module} has LoRA weights but its metadata does not target it")
        if "B.bias" in part and not config.lora_bias:
            raise ValueError(f"{path}: {module} has lora_B.bias but its metadata says lora_bias=False")
        rank = config.rank_pattern.get(get_pattern_key(config.rank_pattern.keys(), module), config.r)
        alpha = config.alpha_pattern.get(get_pattern_key(config.alpha_pattern.keys(), module), config.lora_alpha)
        down, up = part["A.weight"], part["B.weight"]
        if down.shape[0] != rank or up.shape[1] != rank:
            raise ValueError(f"{path}: {module} has rank {down.shape[0]}, its metadata says {rank}")
        scale = alpha / math.sqrt(rank) if config.use_rslora else alpha / rank
        factors[f"{module}.weight"] = LoraFactor(down, up, float(scale), part.get("B.bias"))
    return factors
