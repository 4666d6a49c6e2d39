"""A world's files as one .zip, streamed: entries are written as their bytes are read from
storage (local or S3) and sent as they are made, so neither the archive nor a file is ever held
whole in memory. PNG, JPEG, GLB and Draco files are stored as they are (already compressed);
PLY, NumPy and JSON files are deflated (quickly). Zip64 where a file needs it."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

from worldgen.storage import keys
from worldgen.storage.base import ArtifactStore

CHUNK = 1 << 20
DEFLATED_SUFFIXES = (".ply", ".npy", ".json")


class _Chunks(io.RawIOBase):
    """A write-only, unseekable sink whose bytes are taken out as they come (zipfile then writes
    each entry's sizes and CRC after its data, in a data descriptor)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._chunks.append(view.tobytes())
        return view.nbytes

    def take(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


def zip_stream(
    storage: ArtifactStore, world_id: str, artifacts: Iterable[dict[str, Any]], folder: str
) -> Iterator[bytes]:
    """The .zip of the world's `artifacts` (their store entries), each file under `folder/`."""
    sink = _Chunks()
    with zipfile.ZipFile(sink, mode="w", allowZip64=True) as archive:
        for artifact in artifacts:
            name = artifact["name"]
            info = zipfile.ZipInfo(f"{folder}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            if name.endswith(DEFLATED_SUFFIXES):
                info.compress_type = zipfile.ZIP_DEFLATED
                setattr(info, "_compresslevel", 1)  # noqa: B010 (fast: the meshes are large; public from 3.13)
            info.file_size = int(artifact["size"])  # zipfile decides on Zip64 from it
            with storage.open(keys.world_file(world_id, name)) as source, archive.open(info, "w") as target:
                while block := source.read(CHUNK):
                    target.write(block)
                    if data := sink.take():
                        yield data
            if data := sink.take():
                yield data
    if data := sink.take():  # the central directory
        yield data


def archive_name(prompt: str, world_id: str) -> str:
    """`<prompt's first words>-<id>` in safe ASCII (the .zip's name and its folder)."""
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48].rstrip("-")
    return f"{slug or 'world'}-{world_id}"
