"""Local artifact storage: streamed writes with sha256, listing, deletion, safe keys."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from worldgen.storage import InvalidKey, content_type_for, validate_key
from worldgen.storage.local import LocalArtifactStore


def test_put_open_info_list_delete(tmp_path: Path) -> None:
    storage = LocalArtifactStore(tmp_path / "a")
    data = b"x" * (3 << 20) + b"tail"
    info = storage.put_stream("worlds/j1/world.glb", io.BytesIO(data))
    assert info.size == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.content_type == "model/gltf-binary"
    source = tmp_path / "p.png"
    source.write_bytes(b"\x89PNG....")
    storage.put_file("worlds/j1/panorama.png", source)
    with storage.open("worlds/j1/world.glb") as stream:
        assert stream.read() == data
    assert storage.info("worlds/j1/world.glb") == info
    assert [i.name for i in storage.list("worlds/j1/")] == ["panorama.png", "world.glb"]
    assert storage.download_url("worlds/j1/world.glb", 60) is None
    assert storage.delete_prefix("worlds/j1/") == 2
    assert storage.list("worlds/j1/") == [] and storage.info("worlds/j1/world.glb") is None
    with pytest.raises(FileNotFoundError):
        storage.open("worlds/j1/world.glb")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "worlds//x", "worlds/../x", "worlds/.hidden", "a/b c"])
def test_unsafe_keys_are_rejected(key: str) -> None:
    with pytest.raises(InvalidKey):
        validate_key(key)


def test_content_types() -> None:
    assert content_type_for("mesh_layer0.ply") == "application/octet-stream"
    assert content_type_for("panorama.png") == "image/png"
    assert content_type_for("manifest.json") == "application/json"
