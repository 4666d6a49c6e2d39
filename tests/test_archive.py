"""GET /v1/worlds/{id}/archive: every file of a finished world in one .zip, streamed from local
storage and from S3 (moto's server), each file as stored (sha256 as listed); and the titles and
descriptions of the artifact listing."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.test_api import assert_error
from worldgen.api.app import create_app
from worldgen.api.archive import CHUNK, zip_stream
from worldgen.config import Settings
from worldgen.jobs.artifacts import artifact_entry, describe
from worldgen.jobs.state import JobStatus

BUCKET = "worldgen-archive-test"
MANIFEST = {"layers": [{"index": 0, "name": "fg1"}, {"index": 1, "name": "background"}]}


def _files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {
        "panorama.png": b"\x89PNG\r\n\x1a\n" + rng.bytes(3000),
        "world.glb": b"glTF" + rng.bytes(5000),
        "mesh_layer0.ply": b"ply\n" + bytes(3 * CHUNK + 123),  # several chunks, deflated
        "mesh_layer1.ply": b"ply\n" + rng.bytes(2 * CHUNK),  # incompressible
        "distance.npy": b"\x93NUMPY" + bytes(1000),
        "fg1.json": b'{"bboxes": []}',
        "manifest.json": b'{"files": []}',
    }


@pytest.fixture(scope="module")
def aws() -> Iterator[str]:
    from tests.aws import moto_s3

    with moto_s3(BUCKET) as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    storage_url = None
    if request.param == "s3":
        request.getfixturevalue("aws")
        storage_url = f"s3://{BUCKET}/run-{tmp_path.name}"
    settings = Settings(data_dir=tmp_path / "data", storage_url=storage_url)
    with TestClient(create_app(settings, run_worker=False)) as test_client:
        yield test_client


def _world(client: TestClient, prompt: str = "A Lake at Dawn, pine forest!") -> tuple[str, list[dict]]:
    state = client.app.state.worldgen
    world = client.post("/v1/worlds", json={"prompt": prompt, "height": 64, "steps": 2}).json()["id"]
    state.store.transition(world, JobStatus.STARTING)
    state.store.transition(world, JobStatus.RUNNING)
    artifacts = []
    for name, data in _files().items():
        info = state.storage.put_stream(f"worlds/{world}/{name}", io.BytesIO(data))
        artifacts.append(artifact_entry(name, info, MANIFEST))
    return world, artifacts


def test_the_archive_holds_every_file_as_listed(client: TestClient) -> None:
    world, artifacts = _world(client)
    assert_error(client.get(f"/v1/worlds/{world}/archive"), 409, "conflict")  # running: not yet
    client.app.state.worldgen.store.transition(world, JobStatus.SUCCEEDED, artifacts=artifacts)
    listing = client.get(f"/v1/worlds/{world}/artifacts").json()
    assert listing["archive_url"] == f"/v1/worlds/{world}/archive"
    response = client.get(listing["archive_url"])
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    folder = f"a-lake-at-dawn-pine-forest-{world}"
    assert response.headers["content-disposition"] == f'attachment; filename="{folder}.zip"'
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert names == [f"{folder}/{item['name']}" for item in listing["items"]]
        for item in listing["items"]:
            data = archive.read(f"{folder}/{item['name']}")
            assert hashlib.sha256(data).hexdigest() == item["sha256"] and len(data) == item["size"], item["name"]
        kinds = {info.filename.rsplit("/", 1)[1]: info.compress_type for info in archive.infolist()}
    assert kinds["mesh_layer0.ply"] == zipfile.ZIP_DEFLATED and kinds["world.glb"] == zipfile.ZIP_STORED
    assert len(response.content) < sum(item["size"] for item in listing["items"])  # the zero PLY shrank


def test_the_archive_is_streamed(client: TestClient) -> None:
    """Chunks of about CHUNK bytes as the files are read, never the whole archive at once."""
    world, artifacts = _world(client)
    chunks = list(zip_stream(client.app.state.worldgen.storage, world, artifacts, "w"))
    assert len(chunks) > 5 and max(len(chunk) for chunk in chunks) <= CHUNK + 64 * 1024
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive:
        assert archive.read("w/mesh_layer1.ply") == _files()["mesh_layer1.ply"]


def test_the_archive_of_an_unfinished_deleted_or_expired_world(client: TestClient) -> None:
    state = client.app.state.worldgen
    world, artifacts = _world(client, prompt="!!!")  # nothing to name it by: the folder is world-<id>
    state.store.transition(world, JobStatus.SUCCEEDED, artifacts=artifacts)
    response = client.get(f"/v1/worlds/{world}/archive")
    assert response.headers["content-disposition"] == f'attachment; filename="world-{world}.zip"'
    state.store.set_fields(world, artifacts_removed=True)
    assert_error(client.get(f"/v1/worlds/{world}/archive"), 410, "gone")
    client.delete(f"/v1/worlds/{world}")
    assert_error(client.get(f"/v1/worlds/{world}/archive"), 410, "gone")
    assert_error(client.get("/v1/worlds/nope/archive"), 404, "not_found")
    queued = client.post("/v1/worlds", json={"prompt": "a lake"}).json()["id"]
    error = assert_error(client.get(f"/v1/worlds/{queued}/archive"), 409, "conflict")
    assert error["details"] == {"status": "queued"}


def test_artifacts_have_a_title_a_description_and_a_group(client: TestClient) -> None:
    world, artifacts = _world(client)
    client.app.state.worldgen.store.transition(world, JobStatus.SUCCEEDED, artifacts=artifacts)
    items = {item["name"]: item for item in client.get(f"/v1/worlds/{world}/artifacts").json()["items"]}
    assert items["world.glb"]["group"] == "world" and "Blender" in items["world.glb"]["description"]
    assert (items["mesh_layer0.ply"]["title"], items["mesh_layer0.ply"]["group"]) == (
        "Foreground 1 mesh (PLY)",
        "layer",
    )
    assert items["mesh_layer1.ply"]["description"].startswith("Background layer mesh (PLY, sRGB vertex colours")
    assert items["fg1.json"]["group"] == "data" and items["panorama.png"]["group"] == "image"
    assert all(item["title"] and item["description"] for item in items.values()), items
    assert "layer" not in items["mesh_layer0.ply"]


@pytest.mark.parametrize(
    ("name", "layer", "title", "group"),
    [
        ("world_preview.glb", None, "World preview (glTF)", "world"),
        ("mesh_layer3.drc", "sky", "Sky mesh (Draco)", "layer"),
        ("mesh_layer2.ply", None, "Layer 2 mesh (PLY)", "layer"),  # a world stored before layers were recorded
        ("remove_fg2_image_sr.png", None, "Panorama without Foreground 2, super-resolved", "image"),
        ("fg2_mask.png", None, "Foreground 2 mask", "image"),
        ("sky_mask.png", None, "Sky mask", "image"),
        ("preview.jpg", None, "Thumbnail", "image"),
        ("distance.npy", None, "Distance map", "data"),
        ("something.bin", None, "something.bin", "data"),
    ],
)
def test_one_table_describes_every_file(name: str, layer: str | None, title: str, group: str) -> None:
    text = describe(name, layer)
    assert (text.title, text.group) == (title, group)
    assert text.description or name == "something.bin"
