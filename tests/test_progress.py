"""Progress moves inside every stage: a tiny layered world reports its sub-steps (detection,
mattes, every inpainting step of fg1, fg2 and the sky, every batch of views and the fusion's
iterations, each layer's mesh, each file), the overall fraction never goes back, no stage sits
still for long, and the API shows the sub-step text in `message`."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.helpers import gradient_rgb
from worldgen.models.runtime import ModelRuntime
from worldgen.pipeline import WorldInputs, generate_world
from worldgen.progress import Progress, before_upload, uploading
from worldgen.request import WorldRequest

# Boxes big enough that the tiny ZIM's mattes survive the size filter at height 64.
BOXES = {
    "objects_fg1": [{"label": "tree", "box": [5, 5, 60, 60]}],
    "objects_fg2": [{"label": "bench", "box": [66, 2, 126, 62]}],
}
Event = tuple[float, str, float, str | None]


def _run(tiny_models: Path, tmp: Path, request: WorldRequest) -> tuple[list[Event], float, dict]:
    Image.fromarray(gradient_rgb(64, 128)).save(tmp / "pano", format="PNG")
    events: list[Event] = []
    started = time.monotonic()

    def sink(stage: str, fraction: float, message: str | None) -> None:
        events.append((time.monotonic() - started, stage, fraction, message))

    runtime = ModelRuntime.create(tiny_models, device="cpu", precision="fp32")
    manifest = generate_world(request, runtime, tmp / "out", Progress(sink=sink), WorldInputs(tmp))
    return events, time.monotonic() - started, manifest


WORLDS = {
    # a panorama with boxes: fg1, fg2 and the sky are painted, three depth estimates
    "boxes": dict(panorama_upload_id="pano", seed=7, steps=3, formats=["glb", "ply", "drc"], **BOXES),
    # text → panorama, fg1 by label (detection runs), the sky painted
    "labels": dict(prompt="a lake by a forest", labels_fg1=["tree"], seed=7, steps=2, height=64),
}


@pytest.fixture(scope="module", params=sorted(WORLDS))
def world(request: pytest.FixtureRequest, tiny_models: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp(f"progress-{request.param}")
    return request.param, *_run(tiny_models, tmp, WorldRequest(**WORLDS[request.param]))


def test_overall_progress_never_goes_back_and_ends_at_one(world) -> None:
    _, events, _, _ = world
    overall = [fraction for _, _, fraction, _ in events]
    assert overall == sorted(overall) and overall[-1] == pytest.approx(1.0)
    stages = list(dict.fromkeys(stage for _, stage, _, _ in events))
    assert stages[-3:] == ["depth", "mesh", "export"] and "layers" in stages


def test_every_stage_moves_inside_itself(world) -> None:
    name, events, _, _ = world
    for stage in ("layers", "depth", "mesh", "export", *(["panorama"] if name == "labels" else [])):
        values = {fraction for _, s, fraction, _ in events if s == stage}
        assert len(values) >= 3, (stage, sorted(values))
    assert all(message for _, _, _, message in events), [e for e in events if not e[3]]


def test_no_long_standstill(world) -> None:
    """The overall fraction moves at least every 35 % of the world's time (from the start to the
    last update): before, it stood still through the sky's inpainting and each depth fusion."""
    _, events, total, _ = world
    moves = [0.0] + [t for (t, _, fraction, _), (_, _, before, _) in zip(events[1:], events, strict=False)
                     if fraction > before] + [events[-1][0]]  # fmt: skip
    gaps = np.diff(moves)
    worst = int(np.argmax(gaps))
    stalled = [e for e in events if moves[worst] <= e[0] <= moves[worst + 1]]
    assert gaps[worst] <= 0.35 * total, (f"{gaps[worst]:.1f} s of {total:.1f} s without a move", stalled[:3])


def test_sub_steps_are_named(world) -> None:
    name, events, _, manifest = world
    messages = [(stage, message or "") for _, stage, _, message in events]
    layers = [m for s, m in messages if s == "layers"]
    painted = ["fg1", "fg2", "sky"] if name == "boxes" else ["sky"]
    for layer in painted:
        steps = [m for m in layers if m.startswith(f"{layer}: step ")]
        assert len(steps) == WORLDS[name]["steps"], (layer, layers)  # every step of every pass
    if name == "labels":
        assert any(m.startswith("fg1: finding tree") for m in layers), layers
    depth = [m for s, m in messages if s == "depth"]
    assert any("fusing views, iteration" in m for m in depth) and any("predicting views" in m for m in depth)
    layer_names = [layer["name"] for layer in manifest["layers"]]
    assert [m.split(" (")[0] for s, m in messages if s == "mesh" and "(" in m] == layer_names
    written = {m for s, m in messages if s == "export"}
    assert {"wrote world.glb", "wrote world_preview.glb"} <= written
    assert {f"wrote mesh_layer{i}.ply ({layer})" for i, layer in enumerate(layer_names)} <= written
    if "drc" in WORLDS[name].get("formats", []):
        assert {f"wrote mesh_layer{i}.drc (Draco)" for i in range(len(layer_names))} <= written


def test_the_job_fraction_leaves_room_for_the_upload() -> None:
    assert before_upload(0.0) == 0 and before_upload(1.0) == uploading(0, 5) < uploading(3, 5) < uploading(5, 5) == 1


# Through the API: the sub-step text reaches JobOut.message; a cancel says where it stopped.


def _panorama(client: TestClient) -> str:
    buffer = io.BytesIO()
    Image.fromarray(gradient_rgb(64, 128)).save(buffer, format="PNG")
    files = {"file": ("pano.png", buffer.getvalue(), "image/png")}
    return client.post("/v1/uploads", files=files, data={"kind": "panorama"}).json()["id"]


def _watch(client: TestClient, world_id: str, until=lambda job: False) -> list[dict]:
    """GET the world every 50 ms until it ends (or `until(job)`); every state seen."""
    seen: list[dict] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = client.get(f"/v1/worlds/{world_id}").json()
        seen.append(job)
        if job["status"] in ("succeeded", "failed", "canceled") or until(job):
            return seen
        time.sleep(0.05)
    raise AssertionError(seen[-1])


def test_the_api_shows_sub_steps_and_where_a_cancel_stopped(local_service) -> None:
    client, worker = local_service
    body = {"panorama_upload_id": _panorama(client), "seed": 3, "steps": 3, "formats": ["glb"], **BOXES}
    world = client.post("/v1/worlds", json=body).json()
    runner = threading.Thread(target=worker.run_once, daemon=True)
    runner.start()
    seen = _watch(client, world["id"])
    runner.join(60)
    assert seen[-1]["status"] == "succeeded", seen[-1]
    progress = [job["progress"] for job in seen]
    assert progress == sorted(progress)
    stages = {job["stage"] for job in seen if job["status"] == "running"}
    assert {"layers", "depth"} <= stages, stages
    sub_steps = {job["message"] for job in seen if job["stage"] in ("layers", "depth") and job["message"]}
    assert any(": " in message for message in sub_steps) and len(sub_steps) >= 4, sub_steps

    doomed = client.post("/v1/worlds", json={**body, "seed": 4}).json()
    runner = threading.Thread(target=worker.run_once, daemon=True)
    runner.start()
    _watch(client, doomed["id"], until=lambda job: job["stage"] == "depth")
    assert client.post(f"/v1/worlds/{doomed['id']}/cancel").json()["status"] == "canceling"
    ended = _watch(client, doomed["id"])[-1]
    runner.join(60)
    assert ended["status"] == "canceled" and ended["error"]["code"] == "canceled", ended
    assert ended["error"]["message"].startswith(f"canceled by request during {ended['stage']} ("), ended["error"]
    queued = client.post("/v1/worlds", json={**body, "seed": 5}).json()
    canceled = client.post(f"/v1/worlds/{queued['id']}/cancel").json()
    assert canceled["error"] == {"code": "canceled", "message": "canceled before it started"}
