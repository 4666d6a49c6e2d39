"""`worldgen models prepare`: a model set that loads about half the bytes and skips LoRA fusion.

FLUX.1-dev's transformer is written with the PanoDiT-Text LoRA fused and the weights that fp8
storage keeps in e4m3 already cast; FLUX.1-Fill-dev's transformer is cast the same way, its LoRAs
stay separate (they are switched at run time). Everything else is copied. Work is tensor by
tensor (safetensors in, sharded safetensors out), so it runs on a 32 GiB host without a GPU.

The loader reads a prepared folder like a raw one: `prepared.json` says which LoRAs are already
in, and e4m3 tensors are exactly representable in the compute dtype, so the result is identical
to fusing and casting at load time.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from worldgen.models.flux.lora import apply_deltas, fusion_deltas, read_lora
from worldgen.models.flux.transformer import WEIGHTS, weight_index
from worldgen.models.precision import Precision, PrecisionChoice, finalize_block
from worldgen.models.registry import FLUX_FOLDERS, MODELS, missing_files
from worldgen.models.resolver import ModelResolver

MARKER = "prepared.json"
SHARD_BYTES = 2 << 30
FUSED = {"flux-dev": ["lora-pano-text"], "flux-fill": []}
STORAGE_DTYPE = torch.float8_e4m3fn


def fp8_parameters(repo: Path) -> set[str]:
    """Names of the transformer tensors that fp8-storage keeps in e4m3 (decided by applying the
    same precision step to a meta-device model, so both paths agree by construction)."""
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel

    with init_empty_weights():
        model = FluxTransformer2DModel.from_config(FluxTransformer2DModel.load_config(repo / "transformer"))
    choice = PrecisionChoice(Precision.FP8_STORAGE, torch.bfloat16, "prepare")
    for blocks in (model.transformer_blocks, model.single_transformer_blocks):
        for block in blocks:
            finalize_block(block, choice)
    return {name for name, param in model.named_parameters() if param.dtype == STORAGE_DTYPE}


def prepared_loras(repo: Path) -> list[str]:
    """LoRAs already fused into this FLUX folder's transformer (empty for a raw folder)."""
    marker = repo / MARKER
    return json.loads(marker.read_text())["fused_loras"] if marker.is_file() else []


def write_shards(tensors: Iterator[tuple[str, torch.Tensor]], folder: Path) -> None:
    """Stream (name, tensor) pairs into diffusers-style shards of about SHARD_BYTES plus the index."""
    folder.mkdir(parents=True, exist_ok=True)
    shard: dict[str, torch.Tensor] = {}
    size, total_bytes, names = 0, 0, []
    written: list[tuple[str, list[str]]] = []

    def flush() -> None:
        nonlocal shard, size
        if shard:
            name = f"part-{len(written):05d}.safetensors"
            save_file(shard, str(folder / name), metadata={"format": "pt"})
            written.append((name, list(shard)))
            shard, size = {}, 0

    for key, tensor in tensors:
        shard[key] = tensor
        names.append(key)
        nbytes = tensor.numel() * tensor.element_size()
        size, total_bytes = size + nbytes, total_bytes + nbytes
        if size >= SHARD_BYTES:
            flush()
    flush()
    total = len(written)
    weight_map: dict[str, str] = {}
    for number, (name, keys) in enumerate(written, start=1):
        final = f"diffusion_pytorch_model-{number:05d}-of-{total:05d}.safetensors"
        (folder / name).rename(folder / final)
        weight_map |= dict.fromkeys(keys, final)
    index_json = {"metadata": {"total_size": total_bytes}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / f"{WEIGHTS}.index.json").write_text(json.dumps(index_json, indent=2) + "\n")


def prepare_transformer(repo: Path, target: Path, loras: list[Path]) -> None:
    """Stream `repo/transformer` into `target/transformer`: LoRAs fused, fp8-storage tensors cast."""
    source = repo / "transformer"
    index = weight_index(source)
    cast = fp8_parameters(repo)
    shapes: dict[str, torch.Size] = {}
    for file in sorted(set(index.values())):
        with safe_open(str(file), framework="pt") as handle:
            keys = handle.keys()
            shapes |= {key: torch.Size(handle.get_slice(key).get_shape()) for key in keys}
    deltas = fusion_deltas([read_lora(path) for path in loras], shapes)

    def tensors() -> Iterator[tuple[str, torch.Tensor]]:
        for file in sorted(set(index.values())):
            with safe_open(str(file), framework="pt") as handle:
                for key in sorted(k for k, f in index.items() if f == file):
                    tensor = apply_deltas(handle.get_tensor(key), deltas.get(key, ())).to(torch.bfloat16)
                    yield key, tensor.to(STORAGE_DTYPE) if key in cast else tensor

    target_folder = target / "transformer"
    shutil.rmtree(target_folder, ignore_errors=True)
    write_shards(tensors(), target_folder)
    shutil.copy2(source / "config.json", target_folder / "config.json")


def prepare(source_root: Path, target_root: Path) -> tuple[list[str], list[str]]:
    """Write the prepared set under `target_root` (same layout). The FLUX models are required;
    other models are copied when present. Returns (prepared names, missing names)."""
    resolver = ModelResolver(source_root)
    done, missing = [], []
    for name, spec in MODELS.items():
        if name not in FUSED and missing_files(resolver.folder(name), spec):
            missing.append(name)
            continue
        folder = resolver.resolve(name)
        done.append(name)
        target = target_root / spec.relative_dir
        if name in FUSED:
            target.mkdir(parents=True, exist_ok=True)
            for item in ("model_index.json", *FLUX_FOLDERS):
                if item == "transformer":
                    continue
                source = folder / item
                destination = target / item
                if source.is_dir():
                    shutil.copytree(source, destination, dirs_exist_ok=True)
                else:
                    shutil.copy2(source, destination)
            loras = [resolver.resolve(lora) for lora in FUSED[name]]
            prepare_transformer(folder, target, loras)
            marker = {"fused_loras": FUSED[name], "fp8_storage": "float8_e4m3fn", "source": str(folder)}
            (target / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        elif name not in FUSED["flux-dev"]:  # a fused LoRA is part of its transformer now
            shutil.copytree(folder, target, dirs_exist_ok=True)
    return done, missing
