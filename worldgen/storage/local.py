"""Artifacts as files under one directory; metadata (sha256, content type) in sidecar JSON."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from worldgen.storage.base import ArtifactInfo, content_type_for, hashed_chunks, validate_key

_META = ".meta"


class LocalArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _meta_path(self, key: str) -> Path:
        return self.root / _META / f"{validate_key(key)}.json"

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> ArtifactInfo:
        with Path(path).open("rb") as stream:
            return self.put_stream(key, stream, content_type)

    def put_stream(self, key: str, stream: BinaryIO, content_type: str | None = None) -> ArtifactInfo:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".upload-", delete=False) as part:
            for block in hashed_chunks(stream, digest):
                part.write(block)
                size += len(block)
        os.replace(part.name, target)
        info = ArtifactInfo(key, size, digest.hexdigest(), content_type or content_type_for(key))
        meta = self._meta_path(key)
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"size": info.size, "sha256": info.sha256, "content_type": info.content_type}))
        return info

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def info(self, key: str) -> ArtifactInfo | None:
        meta = self._meta_path(key)
        if not self._path(key).is_file() or not meta.is_file():
            return None
        data = json.loads(meta.read_text())
        return ArtifactInfo(key, data["size"], data["sha256"], data["content_type"])

    def list(self, prefix: str) -> list[ArtifactInfo]:
        base = self._path(prefix.rstrip("/"))
        if not base.is_dir():
            return []
        keys = sorted(
            str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
        return [info for key in keys if (info := self.info(key)) is not None]

    def delete_prefix(self, prefix: str) -> int:
        base = self._path(prefix.rstrip("/"))
        count = len(self.list(prefix))
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(self.root / _META / prefix.rstrip("/"), ignore_errors=True)
        return count

    def download_url(self, key: str, expires_in: int) -> str | None:
        return None
