"""End to end: `worldgen serve` in a subprocess on tiny models, driven over HTTP and by the CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import running_service


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Iterator[str]:
    with running_service(tmp_path_factory.mktemp("service"), tiny_models) as url:
        yield url


def cli(*args: str, server: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worldgen", *args, "--server", server], capture_output=True, text=True, timeout=timeout
    )


def test_submit_follow_download_over_http(server: str, tmp_path: Path) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        job = client.post("/v1/worlds", json={"prompt": "a mountain lake", "height": 128, "steps": 120}).json()
        assert job["status"] == "queued"
        events = []
        with client.stream("GET", f"/v1/worlds/{job['id']}/events", timeout=300) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: ") and line != "data: {}":
                    events.append(json.loads(line[6:]))
        assert events[-1]["status"] == "succeeded", events[-1]
        assert {"queued", "running", "succeeded"} <= {e["status"] for e in events}
        assert any(e["stage"] == "panorama" for e in events)
        artifacts = client.get(f"/v1/worlds/{job['id']}/artifacts").json()["items"]
        manifest = client.get(f"/v1/worlds/{job['id']}/artifacts/manifest.json").json()
        listed = {f["name"]: f["sha256"] for f in manifest["files"]}
        assert set(listed) | {"manifest.json"} == {a["name"] for a in artifacts}
        for name, sha in listed.items():
            body = client.get(f"/v1/worlds/{job['id']}/artifacts/{name}").content
            assert hashlib.sha256(body).hexdigest() == sha
        assert manifest["seed"] == job["seed"]
        metrics = client.get("/metrics").text
        assert 'worldgen_jobs{status="succeeded"}' in metrics


def test_cli_client_commands(server: str, tmp_path: Path) -> None:
    submitted = cli("submit", "a canyon", "--height", "64", "--steps", "2", "--seed", "12", "--follow", server=server)
    assert submitted.returncode == 0, submitted.stderr
    world_id = submitted.stdout.split()[0]
    assert "succeeded" in submitted.stdout
    status = cli("status", world_id, server=server)
    assert status.returncode == 0 and "succeeded" in status.stdout
    jobs = cli("jobs", "--limit", "5", server=server)
    assert world_id in jobs.stdout
    download = cli("download", world_id, "--out", str(tmp_path / "dl"), server=server)
    assert download.returncode == 0, download.stderr
    assert (tmp_path / "dl/panorama.png").is_file() and "sha256 ok" in download.stdout
    refused = cli("cancel", world_id, server=server)
    assert refused.returncode == 2 and "409 conflict" in refused.stderr
    bad = cli("submit", "x", "--height", "100", server=server)
    assert bad.returncode == 2 and "multiple of 16" in bad.stderr
    unknown = cli("status", "nope", server=server)
    assert unknown.returncode == 2 and "404 not_found" in unknown.stderr


def test_uploaded_panorama_and_distance_through_the_service(server: str, tmp_path: Path) -> None:
    """The API path of `--panorama/--distance`: uploads, a job, and exact geometry in the PLY."""
    import io

    import numpy as np
    import trimesh
    from PIL import Image

    from tests.helpers import BOX, box_room, gradient_rgb

    png, npy = io.BytesIO(), io.BytesIO()
    Image.fromarray(gradient_rgb(96, 192)).save(png, format="PNG")
    np.save(npy, box_room(96, 192))
    with httpx.Client(base_url=server, timeout=30) as client:
        pano = client.post("/v1/uploads", files={"file": ("p.png", png.getvalue())}, data={"kind": "panorama"}).json()
        dist = client.post("/v1/uploads", files={"file": ("d.npy", npy.getvalue())}).json()
        job = client.post(
            "/v1/worlds",
            json={
                "panorama_upload_id": pano["id"],
                "distance_upload_id": dist["id"],
                "formats": ["ply", "glb"],
                "layered": False,
            },
        ).json()
        deadline = time.monotonic() + 180
        while (state := client.get(f"/v1/worlds/{job['id']}").json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert state["status"] == "succeeded", state["error"]
        ply = client.get(f"/v1/worlds/{job['id']}/artifacts/mesh_layer0.ply").content
        (tmp_path / "m.ply").write_bytes(ply)
        mesh = trimesh.load(tmp_path / "m.ply", process=False)
        assert np.abs(np.max(np.abs(mesh.vertices) / BOX, axis=1) - 1).max() < 1e-3
        wrong = client.post("/v1/worlds", json={"prompt": "x", "image_upload_id": dist["id"]})
        assert wrong.status_code == 422 and "needs kind 'image'" in wrong.json()["error"]["message"]


def test_relayer_a_finished_world_through_the_worker(server: str) -> None:
    """Generate, look, then pick objects: a second job re-layers the first world's panorama."""
    with httpx.Client(base_url=server, timeout=30) as client:
        first = client.post("/v1/worlds", json={"prompt": "a plaza", "height": 64, "steps": 2, "layered": False}).json()
        _wait(client, first["id"])
        body = {
            "source_world_id": first["id"],
            "scene": "indoor",
            "steps": 2,
            "objects_fg1": [{"label": "fountain", "box": [30, 10, 100, 50]}],
        }
        second = client.post("/v1/worlds", json=body)
        assert second.status_code == 202, second.text
        assert second.json()["seed"] == first["seed"]
        done = _wait(client, second.json()["id"])
        assert done["status"] == "succeeded", done["error"]
        names = {a["name"] for a in client.get(f"/v1/worlds/{done['id']}/artifacts").json()["items"]}
        assert {"fg1_mask.png", "fg1.json", "remove_fg1_image.png", "mesh_layer0.ply", "mesh_layer1.ply"} <= names
        manifest = client.get(f"/v1/worlds/{done['id']}/artifacts/manifest.json").json()
        assert manifest["panorama"]["source_world_id"] == first["id"]
        assert [layer["name"] for layer in manifest["layers"]] == ["fg1", "background"]


def _wait(client: httpx.Client, world_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while (state := client.get(f"/v1/worlds/{world_id}").json())["status"] not in ("succeeded", "failed", "canceled"):
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    return state
