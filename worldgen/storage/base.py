"""The artifact storage interface. Keys look like `worlds/{job_id}/{name}` or `uploads/{id}/{name}`.

Shaped so that S3 fits behind it: streamed writes and reads, size, content type and sha256 kept
with each object, and expiring download URLs where the backend can sign them.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".json": "application/json",
    ".glb": "model/gltf-binary",
    ".ply": "application/octet-stream",
    ".drc": "application/octet-stream",
    ".npy": "application/octet-stream",
}


class InvalidKey(ValueError):
    pass


def validate_key(key: str) -> str:
    """Keys are relative paths of safe segments: no '..', no absolute paths, no hidden files."""
    parts = key.split("/")
    if not parts or any(not _SEGMENT.match(part) or part in (".", "..") for part in parts):
        raise InvalidKey(f"invalid storage key {key!r}")
    return key


def content_type_for(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


@dataclass(frozen=True)
class ArtifactInfo:
    key: str
    size: int
    sha256: str
    content_type: str

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


class ArtifactStore(Protocol):
    def put_file(self, key: str, path: Path, content_type: str | None = None) -> ArtifactInfo: ...

    def put_stream(self, key: str, stream: BinaryIO, content_type: str | None = None) -> ArtifactInfo: ...

    def open(self, key: str) -> BinaryIO:
        """A readable binary stream; raises FileNotFoundError for a missing key."""
        ...

    def info(self, key: str) -> ArtifactInfo | None: ...

    def list(self, prefix: str) -> list[ArtifactInfo]: ...

    def delete_prefix(self, prefix: str) -> int: ...

    def download_url(self, key: str, expires_in: int) -> str | None:
        """A URL a client can fetch directly, or None if the API must stream the bytes itself."""
        ...


def hashed_chunks(stream: BinaryIO, digest: hashlib._Hash, chunk: int = 1 << 20) -> Iterator[bytes]:
    """Yield a stream's chunks while feeding them to `digest`."""
    while block := stream.read(chunk):
        digest.update(block)
        yield block
