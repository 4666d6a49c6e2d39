"""Tiny-twin files with the real checkpoints' byte-level conventions.

`save_deterministic`: torch.save stamps a random `.data/serialization_id` into its zip archive; we
pin it (and its CRC in both zip headers) so the same seed always gives the same file.
`shard_safetensors`: the hub's FLUX transformers and T5 are sharded with an index, so the twins
are too, and every loader's sharded path runs in the tests.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def save_deterministic(obj: object, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_pin_serialization_id(buffer.getvalue()))


def _pin_serialization_id(data: bytes) -> bytes:
    archive = zipfile.ZipFile(io.BytesIO(data))
    entry = next((i for i in archive.infolist() if i.filename.endswith(".data/serialization_id")), None)
    if entry is None:
        return data
    old = archive.read(entry)
    new = b"0" * len(old)
    name_length, extra_length = struct.unpack_from("<HH", data, entry.header_offset + 26)
    start = entry.header_offset + 30 + name_length + extra_length
    patched = bytearray(data)
    patched[start : start + len(old)] = new
    old_crc, new_crc = struct.pack("<I", entry.CRC), struct.pack("<I", zlib.crc32(new))
    patched[entry.header_offset + 14 : entry.header_offset + 18] = new_crc
    central = bytes(patched).find(b"PK\x01\x02", archive.start_dir)
    while central != -1:
        if struct.unpack_from("<I", patched, central + 42)[0] == entry.header_offset:
            assert patched[central + 16 : central + 20] == old_crc
            patched[central + 16 : central + 20] = new_crc
            break
        central = bytes(patched).find(b"PK\x01\x02", central + 4)
    return bytes(patched)


def shard_safetensors(folder: Path, weights_name: str, shards: int) -> None:
    """Replace `folder/weights_name` by `shards` files named as on the hub
    (`model-00001-of-00002.safetensors`, ...) and `{weights_name}.index.json`, whose `weight_map`
    names each tensor's file and `metadata.total_size` counts the tensor bytes.

    Tensors keep their (sorted) order and are cut into runs of about equal bytes."""
    single = folder / weights_name
    with safe_open(str(single), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in sorted(handle.keys())}
    sizes = torch.tensor([t.numel() * t.element_size() for t in tensors.values()], dtype=torch.float64)
    total = int(sizes.sum())
    starts = torch.cumsum(sizes, 0) - sizes  # bytes before each tensor
    assignment = torch.clamp((starts * shards / total).long(), max=shards - 1).tolist()
    if len(set(assignment)) != shards:
        raise ValueError(f"{single}: {len(tensors)} tensors cannot fill {shards} shards")
    stem = weights_name.removesuffix(".safetensors")
    names = [f"{stem}-{index + 1:05d}-of-{shards:05d}.safetensors" for index in range(shards)]
    weight_map = {key: names[shard] for key, shard in zip(tensors, assignment, strict=True)}
    for name in names:
        part = {key: tensor for key, tensor in tensors.items() if weight_map[key] == name}
        save_file(part, str(folder / name), metadata={"format": "pt"})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / f"{weights_name}.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    single.unlink()
