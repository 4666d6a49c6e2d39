"""Load a FLUX transformer by streaming its safetensors straight to the device.

The model skeleton is built on the meta device; tensors arrive one transformer block at a time,
LoRAs to be fused are added to their weights on arrival, and the precision mode (fp8 storage or
fp8 compute) is applied to each block as soon as it is complete. Peak memory is therefore the
final model plus one block, never a full bf16 copy — on the GPU or in host RAM.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors import safe_open

from worldgen.models.flux.lora import LoraWeights, apply_deltas, fusion_deltas
from worldgen.models.precision import PrecisionChoice, finalize_block

WEIGHTS = "diffusion_pytorch_model.safetensors"
_BLOCK = re.compile(r"^((?:single_)?transformer_blocks\.\d+)\.")


def weight_index(folder: Path) -> dict[str, Path]:
    """Tensor name → file, for a single-file or sharded diffusers checkpoint."""
    index = folder / f"{WEIGHTS}.index.json"
    if index.is_file():
        mapping = json.loads(index.read_text())["weight_map"]
        return {key: folder / file for key, file in mapping.items()}
    single = folder / WEIGHTS
    with safe_open(str(single), framework="pt") as handle:
        return dict.fromkeys(handle.keys(), single)


def load_transformer(
    repo: Path,
    *,
    device: torch.device,
    precision: PrecisionChoice,
    fuse: Sequence[LoraWeights] = (),
):
    """Build `repo/transformer` on `device` with `fuse` LoRAs merged into its weights."""
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel

    folder = repo / "transformer"
    with init_empty_weights():
        model = FluxTransformer2DModel.from_config(FluxTransformer2DModel.load_config(folder))
    index = weight_index(folder)
    shapes = {name: tensor.shape for name, tensor in model.state_dict().items()}
    expected = set(shapes)
    if set(index) != expected:
        missing, extra = sorted(expected - set(index)), sorted(set(index) - expected)
        raise ValueError(
            f"{folder} does not match FluxTransformer2DModel: {len(missing)} missing tensors "
            f"(e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})"
        )
    deltas = fusion_deltas(fuse, shapes)

    units: dict[str, list[str]] = defaultdict(list)
    for key in index:
        match = _BLOCK.match(key)
        units[match.group(1) if match else ""].append(key)
    modules = dict(model.named_modules())
    with ExitStack() as stack, torch.no_grad():
        handles = {
            path: stack.enter_context(safe_open(str(path), framework="pt", device=_safetensors_device(device)))
            for path in sorted(set(index.values()))
        }
        for unit in sorted(units, key=_unit_order):
            for key in units[unit]:
                tensor = apply_deltas(handles[index[key]].get_tensor(key), deltas.get(key, ()))
                _assign(model, key, tensor.to(dtype=precision.compute_dtype))
            if unit:
                finalize_block(modules[unit], precision)
    model.eval().requires_grad_(False)
    return model


def _safetensors_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    return device.type


def _unit_order(unit: str) -> tuple[int, int]:
    """Top-level tensors first, then double-stream blocks, then single-stream blocks, in index order."""
    if not unit:
        return (0, 0)
    kind, index = unit.rsplit(".", 1)
    return (1 if kind == "transformer_blocks" else 2, int(index))


def _assign(model: torch.nn.Module, key: str, tensor: torch.Tensor) -> None:
    owner_name, _, leaf = key.rpartition(".")
    owner = model.get_submodule(owner_name)
    if leaf in owner._parameters:
        owner._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=False)
    else:
        owner._buffers[leaf] = tensor
