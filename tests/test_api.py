"""The HTTP API contract: every bad input gets the one error shape and a 4xx, never a 500."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from worldgen.api.app import create_app
from worldgen.config import Settings
from worldgen.jobs.state import JobStatus


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, run_worker=False)) as test_client:
        yield test_client


def store_of(client: TestClient):
    return client.app.state.worldgen.store


def png(width: int = 64, height: int = 48, fmt: str = "PNG", noise: bool = False) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8) if noise else None
    Image.fromarray(pixels if noise else np.zeros((height, width, 3), np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def submit(client: TestClient, **body: object):
    return client.post("/v1/worlds", json={"prompt": "a lake", **body})


def test_submit_returns_202_with_the_job(client: TestClient) -> None:
    response = submit(client, height=64, steps=2)
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "queued" and 0 <= job["seed"] < 2**32 and job["request"]["seed"] == job["seed"]
    assert response.headers["Location"] == f"/v1/worlds/{job['id']}"
    assert job["links"]["events"] == f"/v1/worlds/{job['id']}/events"
    assert client.get(f"/v1/worlds/{job['id']}").json()["id"] == job["id"]
    fixed = submit(client, seed=7).json()
    assert fixed["seed"] == 7


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"prompt": "a", "seed": -1}, "seed"),
        ({"prompt": "a", "seed": 2**32}, "seed"),
        ({"prompt": "a", "seed": "seven"}, "seed"),
        ({"prompt": "a", "scene": "underwater"}, "scene"),
        ({"prompt": "a", "labels_fg1": [f"l{i}" for i in range(9)]}, "labels_fg1"),
        ({"prompt": "a", "labels_fg2": ["x" * 65]}, "labels_fg2.0"),
        ({"prompt": "a", "labels_fg1": [""]}, "labels_fg1.0"),
        ({"prompt": "a", "formats": []}, "formats"),
        ({"prompt": "a", "formats": ["obj"]}, "formats.0"),
        ({"prompt": "a", "formats": ["glb", "glb"]}, "formats"),
        ({"prompt": "a", "precision": "int4"}, "precision"),
        ({"prompt": "a", "height": 100}, "height"),
        ({"prompt": "a", "height": 4096}, "height"),
        ({"prompt": "a", "steps": 0}, "steps"),
        ({"prompt": "a", "true_cfg_scale": 50}, "true_cfg_scale"),
        ({"prompt": "a", "step_cache": "deepcache"}, "step_cache"),
        ({"prompt": "a", "colour": "blue"}, "colour"),
        ({"prompt": "a", "image_upload_id": "nope"}, "image_upload_id"),
    ],
)
def test_bad_requests_list_the_field(client: TestClient, body: dict, field: str) -> None:
    error = assert_error(client.post("/v1/worlds", json=body), 422, "invalid_request")
    assert field in [f["field"] for f in error["details"]["fields"]], error


def test_malformed_bodies(client: TestClient) -> None:
    assert_error(client.post("/v1/worlds", content=b"{not json", headers={"content-type": "application/json"}), 422)
    assert_error(client.post("/v1/worlds", json=["a list"]), 422)


@pytest.mark.parametrize(
    ("body", "what", "line", "column"),
    [
        (b'{"prompt": "a lake", }', "Expecting property name enclosed in double quotes", 1, 22),
        (b'{\n  "prompt": "a lake"\n  "seed": 7\n}', "Expecting ',' delimiter", 3, 3),
        (b'{"prompt": "a lake"', "Expecting ',' delimiter", 1, 20),
        (b"{not json", "Expecting property name enclosed in double quotes", 1, 2),
    ],
)
def test_a_json_syntax_error_says_where(client: TestClient, body: bytes, what: str, line: int, column: int) -> None:
    """Not a field named after the byte offset (it was `"field": "123"`): what, line and column."""
    for path in ("/v1/worlds", "/v1/session"):
        error = assert_error(client.post(path, content=body, headers={"content-type": "application/json"}), 422)
        assert error["code"] == "invalid_json", error
        assert error["message"] == f"request body is not valid JSON: {what} at line {line} column {column}"
        assert error["details"]["line"] == line and error["details"]["column"] == column
        assert "fields" not in error["details"]
        try:
            json.loads(body)
        except json.JSONDecodeError as exc:  # the same place Python's own parser names
            assert (exc.lineno, exc.colno, exc.msg) == (line, column, what)


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded"])
def test_a_json_body_without_its_content_type_gets_a_hint(client: TestClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/v1/worlds", content=json.dumps({"prompt": "a lake"}).encode(), headers=headers)
    error = assert_error(response, 415, "unsupported_media_type")
    assert (
        "send Content-Type: application/json" in error["message"]
        and (content_type or "no Content-Type") in error["message"]
    )
    charset = client.post(
        "/v1/worlds", content=b'{"prompt": "a"}', headers={"content-type": "application/json; charset=utf-8"}
    )
    assert charset.status_code == 202, charset.text
    # uploads stay multipart
    assert client.post("/v1/uploads", files={"file": ("photo.png", png(), "image/png")}).status_code == 201


def test_idempotency_key(client: TestClient) -> None:
    first = client.post("/v1/worlds", json={"prompt": "a lake"}, headers={"Idempotency-Key": "abc"})
    again = client.post("/v1/worlds", json={"prompt": "a lake"}, headers={"Idempotency-Key": "abc"})
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.json()["seed"] == first.json()["seed"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = client.post("/v1/worlds", json={"prompt": "a sea"}, headers={"Idempotency-Key": "abc"})
    assert_error(other, 409, "idempotency_conflict")


def test_get_list_and_cursor(client: TestClient) -> None:
    ids = [submit(client, seed=i).json()["id"] for i in range(5)]
    page = client.get("/v1/worlds", params={"limit": 2}).json()
    assert [j["id"] for j in page["items"]] == ids[::-1][:2]
    rest = client.get("/v1/worlds", params={"limit": 10, "cursor": page["next_cursor"]}).json()
    assert [j["id"] for j in rest["items"]] == ids[::-1][2:] and rest["next_cursor"] is None
    queued = client.get("/v1/worlds", params={"status": "queued"}).json()["items"]
    assert len(queued) == 5
    assert_error(client.get("/v1/worlds", params={"status": "sleeping"}), 422)
    assert_error(client.get("/v1/worlds", params={"limit": 0}), 422)
    assert_error(client.get("/v1/worlds", params={"cursor": "%%%"}), 422)
    assert_error(client.get("/v1/worlds/unknown"), 404, "not_found")


def test_cancel(client: TestClient) -> None:
    queued = submit(client).json()["id"]
    assert client.post(f"/v1/worlds/{queued}/cancel").json()["status"] == "canceled"
    assert client.post(f"/v1/worlds/{queued}/cancel").status_code == 200
    store = store_of(client)
    running = submit(client).json()["id"]
    store.claim("w", "local")
    store.transition(running, JobStatus.RUNNING)
    assert client.post(f"/v1/worlds/{running}/cancel").json()["status"] == "canceling"
    assert client.post(f"/v1/worlds/{running}/cancel").json()["status"] == "canceling"
    for final in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        job = submit(client).json()["id"]
        store.claim("w", "local")
        store.transition(job, JobStatus.RUNNING)
        store.transition(job, final)
        assert_error(client.post(f"/v1/worlds/{job}/cancel"), 409, "conflict")
    assert_error(client.post("/v1/worlds/unknown/cancel"), 404)


def test_delete_keeps_a_tombstone_and_removes_artifacts(client: TestClient) -> None:
    store = store_of(client)
    storage = client.app.state.worldgen.storage
    job = submit(client).json()["id"]
    store.claim("w", "local")
    store.transition(job, JobStatus.RUNNING)
    info = storage.put_stream(f"worlds/{job}/panorama.png", io.BytesIO(png()))
    artifact = {"name": "panorama.png", "size": info.size, "sha256": info.sha256, "content_type": "image/png"}
    store.transition(job, JobStatus.SUCCEEDED, artifacts=[artifact])
    assert client.get(f"/v1/worlds/{job}/artifacts/panorama.png").content == png()
    deleted = client.delete(f"/v1/worlds/{job}")
    assert deleted.status_code == 200 and deleted.json()["deleted"]
    assert storage.list(f"worlds/{job}/") == []
    for path in ("", "/artifacts", "/artifacts/panorama.png", "/events"):
        assert_error(client.get(f"/v1/worlds/{job}{path}"), 410, "gone")
    assert_error(client.delete(f"/v1/worlds/{job}"), 410)
    running = submit(client).json()["id"]
    store.claim("w", "local")
    store.transition(running, JobStatus.RUNNING)
    assert client.delete(f"/v1/worlds/{running}").json()["status"] == "canceling"


def test_artifacts(client: TestClient) -> None:
    store = store_of(client)
    storage = client.app.state.worldgen.storage
    job = submit(client).json()["id"]
    assert client.get(f"/v1/worlds/{job}/artifacts").json()["items"] == []
    store.claim("w", "local")
    store.transition(job, JobStatus.RUNNING)
    info = storage.put_stream(f"worlds/{job}/manifest.json", io.BytesIO(b'{"files": []}'))
    entry = {"name": "manifest.json", "size": info.size, "sha256": info.sha256, "content_type": "application/json"}
    store.transition(job, JobStatus.SUCCEEDED, artifacts=[entry])
    listing = client.get(f"/v1/worlds/{job}/artifacts").json()["items"]
    url = f"/v1/worlds/{job}/artifacts/manifest.json"
    text = {"title": "Manifest", "group": "data", "description": listing[0]["description"]}
    assert "timings" in text["description"]
    assert listing == [{**entry, **text, "url": url, "download_url": None, "expires_at": None}]  # local: no presigning
    download = client.get(f"/v1/worlds/{job}/artifacts/manifest.json")
    assert download.status_code == 200 and download.headers["x-checksum-sha256"] == info.sha256
    assert_error(client.get(f"/v1/worlds/{job}/artifacts/world.glb"), 404)
    for name in ("..%2F..%2Fworldgen.db", "../manifest.json", "%2Fetc%2Fpasswd", ".meta"):
        assert client.get(f"/v1/worlds/{job}/artifacts/{name}").status_code == 404
    store.set_fields(job, artifacts_removed=True)
    assert_error(client.get(f"/v1/worlds/{job}/artifacts"), 410, "gone")


def test_uploads(client: TestClient) -> None:
    image = client.post("/v1/uploads", files={"file": ("photo.png", png(), "image/png")})
    assert image.status_code == 201
    body = image.json()
    assert (body["kind"], body["width"], body["height"], body["content_type"]) == ("image", 64, 48, "image/png")
    assert client.get(f"/v1/uploads/{body['id']}").json() == body
    jpeg = client.post("/v1/uploads", files={"file": ("p.jpg", png(fmt="JPEG"), "image/jpeg")}).json()
    assert jpeg["content_type"] == "image/jpeg"
    ok = submit(client, image_upload_id=body["id"])
    assert ok.status_code == 202 and ok.json()["request"]["image_upload_id"] == body["id"]
    pano = client.post("/v1/uploads", files={"file": ("p.png", png(128, 64))}, data={"kind": "panorama"}).json()
    assert pano["kind"] == "panorama"
    assert_error(submit(client, image_upload_id=pano["id"]), 422, "invalid_request")
    buffer = io.BytesIO()
    np.save(buffer, np.ones((32, 64), np.float32))
    distance = client.post("/v1/uploads", files={"file": ("d.npy", buffer.getvalue())})
    assert distance.status_code == 201 and distance.json()["kind"] == "distance"


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("files", "data", "status", "code"),
    [
        ({"file": ("a.txt", b"hello world")}, {}, 415, "unsupported_media_type"),
        ({"file": ("a.png", b"")}, {}, 422, "invalid_request"),
        ({"file": ("a.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)}, {}, 422, "invalid_image"),
        ({"file": ("a.png", png(8, 8))}, {}, 422, "invalid_image"),
        ({"file": ("a.png", png(100, 60))}, {"kind": "panorama"}, 422, "invalid_image"),
        ({"file": ("a.png", png())}, {"kind": "video"}, 422, "invalid_request"),
        ({"file": ("a.png", png())}, {"kind": "distance"}, 415, "unsupported_media_type"),
        ({"file": ("d.npy", _npy(np.ones((4, 4, 3), np.float32)))}, {}, 422, "invalid_distance"),
        ({"file": ("d.npy", _npy(np.ones((32, 64), np.int32)))}, {}, 422, "invalid_distance"),
        ({"file": ("d.npy", _npy(-np.ones((32, 64), np.float32)))}, {}, 422, "invalid_distance"),
        ({"file": ("d.npy", _npy(np.ones((32, 32), np.float32)))}, {}, 422, "invalid_distance"),
        ({"file": ("d.npy", b"\x93NUMPY" + b"\x00" * 40)}, {}, 422, "invalid_distance"),
        ({}, {}, 422, "invalid_request"),
    ],
)
def test_bad_uploads(client: TestClient, files: dict, data: dict, status: int, code: str) -> None:
    assert_error(client.post("/v1/uploads", files=files, data=data), status, code)


def test_upload_size_limit(settings: Settings) -> None:
    small = settings.model_copy(update={"upload_max_bytes": 1000, "upload_max_npy_bytes": 2000})
    with TestClient(create_app(small, run_worker=False)) as client:
        assert_error(client.post("/v1/uploads", files={"file": ("a.png", png(200, 200, noise=True))}), 413, "too_large")
        assert_error(client.post("/v1/uploads", files={"file": ("a.png", b"\x89PNG" * 1000)}), 413, "too_large")


def test_unknown_upload_and_routes(client: TestClient) -> None:
    assert_error(client.get("/v1/uploads/nope"), 404)
    assert_error(client.get("/v1/nothing"), 404)
    assert_error(client.put("/v1/worlds"), 405)


def test_world_events_until_terminal(client: TestClient) -> None:
    store = store_of(client)
    job = submit(client).json()["id"]

    def drive() -> None:
        time.sleep(0.5)
        store.claim("w", "local")
        store.transition(job, JobStatus.RUNNING)
        for step in range(3):
            store.record_progress(job, stage="panorama", progress=(step + 1) / 3, message=f"step {step}")
            time.sleep(0.3)
        store.transition(job, JobStatus.SUCCEEDED)

    threading.Thread(target=drive, daemon=True).start()
    statuses, progress, events, sizes = [], [], [], []
    with client.stream("GET", f"/v1/worlds/{job}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: ") and line != "data: {}":
                event = json.loads(line[6:])
                events.append(event)
                sizes.append(len(line))
                statuses.append(event["status"])
                progress.append(event["progress"])
    assert statuses[0] == "queued" and statuses[-1] == "succeeded" and "running" in statuses
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)
    # the request (which never changes) comes once, in the first event; GET keeps it
    request = client.get(f"/v1/worlds/{job}").json()["request"]
    assert events[0]["request"] == request and all("request" not in event for event in events[1:])
    assert max(sizes[1:]) < sizes[0] - len(json.dumps(request, separators=(",", ":"))) + 100, sizes


def test_list_level_events(client: TestClient) -> None:
    store = store_of(client)
    seen: list[tuple[str, str]] = []
    first = submit(client).json()["id"]

    def drive() -> None:
        time.sleep(0.6)
        second = submit(client).json()["id"]
        store.request_cancel(first)
        store.request_cancel(second)

    with_request: list[tuple[str, bool]] = []
    with client.stream("GET", "/v1/events") as stream:
        threading.Thread(target=drive, daemon=True).start()
        for line in stream.iter_lines():
            if line.startswith("data: ") and line != "data: {}":
                event = json.loads(line[6:])
                seen.append((event["id"], event["status"]))
                with_request.append((event["id"], "request" in event))
                if sum(status == "canceled" for _, status in seen) == 2:
                    break
    assert (first, "canceled") in seen and len({job for job, _ in seen}) == 2
    # as the world's own stream: a world's first event on this stream has the request, later ones not
    firsts = {job: index for index, (job, _) in reversed(list(enumerate(with_request)))}
    assert [has for index, (job, has) in enumerate(with_request)] == [firsts[job] == index for index, (job, _) in
                                                                       enumerate(with_request)]  # fmt: skip
    assert len(with_request) > len(firsts)  # some later events, without it


def test_health_ready_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    submit(client)
    text = client.get("/metrics").text
    assert 'worldgen_jobs{status="queued"} 1.0' in text
    assert "worldgen_stage_duration_seconds" in text


def _finished_world(client: TestClient, height: int = 64, **body: object) -> str:
    """A succeeded world with a stored panorama.png (as a worker would leave it)."""
    store, storage = store_of(client), client.app.state.worldgen.storage
    job = submit(client, **{"height": height, "seed": 11, **body}).json()["id"]
    store.transition(job, JobStatus.STARTING)  # this one, whatever else is queued
    store.transition(job, JobStatus.RUNNING)
    info = storage.put_stream(f"worlds/{job}/panorama.png", io.BytesIO(png(2 * height, height)))
    entry = {"name": "panorama.png", "size": info.size, "sha256": info.sha256, "content_type": "image/png"}
    store.transition(job, JobStatus.SUCCEEDED, artifacts=[entry])
    return job


def test_relayering_a_finished_world(client: TestClient) -> None:
    source = _finished_world(client)
    body = {
        "source_world_id": source,
        "objects_fg1": [{"label": "tree", "box": [10, 5, 40, 30]}],
        "objects_fg2": [{"label": "bench", "box": [110, 5, 140, 30]}],
    }
    job = client.post("/v1/worlds", json=body)
    assert job.status_code == 202, job.text
    assert job.json()["seed"] == 11  # the source world's seed
    assert job.json()["request"]["objects_fg2"][0]["box"] == [110.0, 5.0, 140.0, 30.0]


SOURCE = {
    "prompt": "a harbour", "negative_prompt": "fog", "true_cfg_scale": 2.0, "scene": "indoor",
    "formats": ["glb", "drc"], "precision": "fp32", "steps": 7, "guidance": 12.0, "step_cache": "first-block",
    "vae_mode": "reference", "depth_compression": False, "inpaint_seed": 3, "labels_fg1": ["boat"],
    "labels_fg2": ["crane"],
}  # fmt: skip
BOX = {"objects_fg1": [{"label": "tree", "box": [10, 5, 40, 30]}]}


def test_relayering_takes_what_it_leaves_out_from_the_source(client: TestClient) -> None:
    """Formats (Draco was lost), scene, steps, precision, … come from the source world; labels, boxes,
    inputs and the stage do not; what the request sets wins."""
    source = _finished_world(client, height=64, **SOURCE)
    world = client.post("/v1/worlds", json={"source_world_id": source, **BOX})
    assert world.status_code == 202, world.text
    request = world.json()["request"]
    assert {k: request[k] for k in SOURCE if not k.startswith("labels")} == {
        k: v for k, v in SOURCE.items() if not k.startswith("labels")
    }
    assert request["labels_fg1"] == request["labels_fg2"] == [] and request["objects_fg1"] == BOX["objects_fg1"]
    assert (request["seed"], request["height"], request["stage"], request["layered"]) == (11, 64, "world", True)
    mine = {"formats": ["ply"], "scene": "outdoor", "steps": 2, "seed": 5, "inpaint_seed": 25}
    request = client.post("/v1/worlds", json={"source_world_id": source, **BOX, **mine}).json()["request"]
    assert {k: request[k] for k in mine} == mine and request["guidance"] == 12.0


def test_relayering_keeps_a_single_layer_only_without_objects(client: TestClient) -> None:
    flat = _finished_world(client, layered=False)
    relayered = client.post("/v1/worlds", json={"source_world_id": flat, **BOX}).json()["request"]
    assert relayered["layered"] is True  # objects are layers
    preview = _finished_world(client, stage="panorama", layered=False, formats=["glb", "drc"])
    refined = client.post("/v1/worlds", json={"source_world_id": preview}).json()["request"]
    assert (refined["layered"], refined["formats"], refined["stage"]) == (False, ["glb", "drc"], "world")


def test_relayering_a_finished_world_needs_a_box_or_a_label(client: TestClient) -> None:
    """Re-layering a world without a box or a label made the same world again; a preview becomes a
    world without them (preview → refine)."""
    source = _finished_world(client)
    error = assert_error(client.post("/v1/worlds", json={"source_world_id": source}), 422, "invalid_request")
    assert [f["field"] for f in error["details"]["fields"]] == ["objects_fg1"]
    assert "draw a box" in error["message"] and "labels_fg1" in error["message"]
    also = assert_error(client.post("/v1/worlds", json={"source_world_id": source, "layered": False}), 422)
    assert also["details"]["fields"][0]["field"] == "objects_fg1"
    labelled = client.post("/v1/worlds", json={"source_world_id": source, "labels_fg2": ["bench"]})
    assert labelled.status_code == 202, labelled.text
    preview = _finished_world(client, stage="panorama")
    assert client.post("/v1/worlds", json={"source_world_id": preview}).status_code == 202


@pytest.mark.parametrize(
    ("objects", "field", "message"),
    [
        ([{"label": "tree", "box": [130, 5, 140, 30]}], "objects_fg1.0.box", "outside"),  # starts beyond the width
        ([{"label": "tree", "box": [10, 5, 40, 70]}], "objects_fg1.0.box", "outside"),  # below the bottom
        ([{"label": "tree", "box": [100, 5, 260, 30]}], "objects_fg1.0.box", "outside"),  # beyond 2 × width
        ([{"label": "tree", "box": [40, 5, 10, 30]}], "objects_fg1.0.box", "x1 > x0"),
        ([{"label": "tree", "box": [-1, 5, 10, 30]}], "objects_fg1.0.box", "negative"),
        ([{"label": "", "box": [1, 5, 10, 30]}], "objects_fg1.0.label", ""),
        ([{"label": "tree", "box": [1, 5, 10]}], "objects_fg1.0.box.3", ""),
        ([{"label": "t", "box": [1, 1, 2, 2]}] * 17, "objects_fg1", "17"),
    ],
)
def test_bad_boxes(client: TestClient, objects: list, field: str, message: str) -> None:
    source = _finished_world(client)
    error = assert_error(client.post("/v1/worlds", json={"source_world_id": source, "objects_fg1": objects}), 422)
    fields = {f["field"]: f["message"] for f in error["details"]["fields"]}
    assert field in fields and message in fields[field] + error["message"], error


def test_bad_source_worlds(client: TestClient) -> None:
    assert_error(client.post("/v1/worlds", json={"source_world_id": "nope"}), 422)
    deleted = _finished_world(client)
    unfinished = submit(client).json()["id"]
    error = assert_error(client.post("/v1/worlds", json={"source_world_id": unfinished}), 422)
    assert "queued, not succeeded" in error["message"]
    client.delete(f"/v1/worlds/{deleted}")
    error = assert_error(client.post("/v1/worlds", json={"source_world_id": deleted}), 422)
    assert "deleted" in error["message"]
    boxes_without_panorama = {"prompt": "a lake", "objects_fg1": [{"label": "t", "box": [1, 1, 5, 5]}]}
    error = assert_error(client.post("/v1/worlds", json=boxes_without_panorama), 422)
    assert "boxes need a panorama" in error["message"]
    both = {"source_world_id": deleted, "image_upload_id": "x"}
    assert_error(client.post("/v1/worlds", json=both), 422)


def test_too_many_labels_and_long_labels(client: TestClient) -> None:
    error = assert_error(client.post("/v1/worlds", json={"prompt": "a", "labels_fg1": list("abcdefghi")}), 422)
    assert error["details"]["fields"][0]["field"] == "labels_fg1"


def test_the_page_and_its_assets(client: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from worldgen.api.routes import page

    if not (page.STATIC / "index.html").is_file():
        pytest.fail("the web page is not built: ./scripts/bootstrap builds it")
    html = client.get("/")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in html.text
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert len(script.content) > 100_000  # three.js is bundled in
    assert client.get("/static/missing.js").status_code == 404
    monkeypatch.setattr(page, "STATIC", tmp_path / "unbuilt")
    unbuilt = client.get("/")
    assert unbuilt.status_code == 503 and "scripts/serve" in unbuilt.text
