"""`torch.save` with reproducible bytes (for tiny twins in `.pt`/`.pth` formats).

torch.save stamps a random `.data/serialization_id` into its zip archive; we pin it (and its
CRC in both zip headers) so the same seed always gives the same file.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import torch


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
