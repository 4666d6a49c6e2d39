"""Regression tests for what a probe of the running service found (issue 16), on SQLite and
PostgreSQL: each answered 500, took gigabytes, or said too much before."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers import app_in_thread, read_response
from tests.test_api import assert_error, client, settings, store_of, submit  # noqa: F401  (fixtures)
from worldgen.api.app import create_app
from worldgen.config import Settings

BOXED = {"prompt": "", "panorama_upload_id": "0" * 32}


@pytest.mark.parametrize(
    "path",
    ["/v1/worlds/%00", "/v1/worlds/abc%00def", "/v1/worlds/%00/cancel", "/v1/worlds/%00/artifacts"],
)
def test_a_nul_byte_in_an_id_is_a_404(client: TestClient, path: str) -> None:  # noqa: F811
    """PostgreSQL refuses a NUL byte in a text parameter; ids are now checked before any query."""
    assert_error(client.get(path) if "cancel" not in path else client.post(path), 404, "not_found")


@pytest.mark.parametrize("field", ["image_upload_id", "source_world_id"])
def test_a_nul_byte_in_a_referenced_id_is_a_422(client: TestClient, field: str) -> None:  # noqa: F811
    error = assert_error(submit(client, **{field: "a\x00b"}), 422, "invalid_request")
    assert field in json.dumps(error)


def test_nan_box_coordinates_are_refused(client: TestClient) -> None:  # noqa: F811
    body = json.dumps({"panorama_upload_id": "0" * 32, "objects_fg1": [{"label": "x", "box": [1, 1, "NaN", 5]}]})
    response = client.post(
        "/v1/worlds", content=body.replace('"NaN"', "NaN"), headers={"content-type": "application/json"}
    )
    error = assert_error(response, 422, "invalid_request")
    assert "finite" in error["message"]


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+00:00", "2026-01-01T00:00:00"])
def test_a_cursor_out_of_range_is_a_422(client: TestClient, when: str) -> None:  # noqa: F811
    cursor = base64.urlsafe_b64encode(json.dumps([when, "0" * 32]).encode()).decode().rstrip("=")
    assert_error(client.get("/v1/worlds", params={"cursor": cursor}), 422, "invalid_request")


def test_static_paths_are_404_while_the_page_is_not_built(tmp_path: Path, monkeypatch) -> None:
    """A fresh checkout before scripts/bootstrap: the app is made with no page directory at all."""
    import worldgen.api.app as app_module

    monkeypatch.setattr(app_module, "STATIC", tmp_path / "not-built")
    with TestClient(create_app(Settings(data_dir=tmp_path / "data"), run_worker=False)) as fresh:
        for path in ("/static/app.js", "/static/", "/static/x/y.css"):
            assert_error(fresh.get(path), 404, "not_found")


def test_a_deleted_worlds_idempotency_key_is_gone_not_replayed(client: TestClient) -> None:  # noqa: F811
    headers = {"Idempotency-Key": "probe-key-1"}
    first = client.post("/v1/worlds", json={"prompt": "a lake", "seed": 1}, headers=headers)
    assert first.status_code == 202
    assert client.delete(f"/v1/worlds/{first.json()['id']}").status_code == 200
    again = client.post("/v1/worlds", json={"prompt": "a lake", "seed": 1}, headers=headers)
    error = assert_error(again, 410, "gone")
    assert error["details"]["world_id"] == first.json()["id"]


def test_world_data_does_not_show_the_workers_host_and_pid(client: TestClient) -> None:  # noqa: F811
    world = submit(client, seed=1).json()
    store_of(client).set_fields(world["id"], backend_ref="worker-host:12345")
    shown = client.get(f"/v1/worlds/{world['id']}").json()
    assert shown["backend_ref"] is None and "worker-host" not in json.dumps(shown)


def test_a_json_body_over_the_limit_is_413_from_its_length(client: TestClient) -> None:  # noqa: F811
    body = json.dumps({"prompt": "x" * (2 << 20)})
    error = assert_error(client.post("/v1/worlds", content=body, headers={"content-type": "application/json"}), 413)
    assert error["code"] == "too_large" and error["details"]["limit"] == 1 << 20


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[str]:
    """The app under uvicorn on a free port (a chunked body has no Content-Length to check)."""
    small = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
        max_json_bytes=4096,
        body_timeout_seconds=1.0,
    )
    with app_in_thread(create_app(small, run_worker=False)) as port:
        yield f"127.0.0.1:{port}"


def test_a_chunked_json_body_is_cut_off_at_the_limit(live_server: str) -> None:
    """Without Content-Length the bytes are counted as they arrive: 413 after ≈ the limit, while
    the client still had 100 MB to send."""
    host, port = live_server.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        head = (f"POST /v1/worlds HTTP/1.1\r\nHost: {live_server}\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        connection.sendall(head.encode())
        chunk = b"x" * 65536
        sent = 0
        response = b""
        connection.settimeout(0.05)
        while sent < 100 << 20:
            try:
                connection.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            try:
                response += connection.recv(65536)
            except (TimeoutError, BlockingIOError):
                continue
            if response:
                break
        status, body = read_response(connection, response)
    assert status == 413 and body["error"]["code"] == "too_large"
    assert sent < 8 << 20  # stopped long before the 100 MB


def test_a_stalled_body_is_408_not_held_open(live_server: str) -> None:
    host, port = live_server.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        head = (f"POST /v1/worlds HTTP/1.1\r\nHost: {live_server}\r\nContent-Type: application/json\r\n"
                "Content-Length: 1000\r\n\r\n{\"prompt\": ")  # fmt: skip
        connection.sendall(head.encode())
        started = time.monotonic()
        response = connection.recv(65536)
        waited = time.monotonic() - started
    assert response.startswith(b"HTTP/1.1 408"), response[:200]
    assert b'"request_timeout"' in response and waited < 5


def test_the_body_timeout_does_not_cut_an_event_stream(live_server: str) -> None:
    """After the body, receive() only waits for the client to leave: an SSE stream outlives the
    1 s body timeout and still carries the cancel made 2 s later."""
    import httpx

    base = f"http://{live_server}"
    world = httpx.post(f"{base}/v1/worlds", json={"prompt": "a lake", "seed": 1}).json()
    timer = threading.Timer(2.0, lambda: httpx.post(f"{base}/v1/worlds/{world['id']}/cancel"))
    lines = []
    with httpx.stream("GET", f"{base}/v1/worlds/{world['id']}/events", timeout=10) as stream:
        timer.start()
        for line in stream.iter_lines():
            lines.append(line)
            if line.startswith("event: end"):
                break
    assert stream.status_code == 200
    assert any('"status":"canceled"' in line for line in lines), lines


# ---- preview, then refine (issue 16) -----------------------------------------------------------------


def test_queued_worlds_show_their_place_in_the_queue(client: TestClient) -> None:  # noqa: F811
    worlds = [submit(client, seed=i).json() for i in range(3)]
    assert [w["queue_position"] for w in worlds] == [1, 2, 3]
    assert client.get(f"/v1/worlds/{worlds[2]['id']}").json()["queue_position"] == 3
    client.post(f"/v1/worlds/{worlds[0]['id']}/cancel")
    assert client.get(f"/v1/worlds/{worlds[2]['id']}").json()["queue_position"] == 2
    assert client.get(f"/v1/worlds/{worlds[0]['id']}").json()["queue_position"] is None  # not queued
    assert worlds[0]["links"]["thumbnail"] is None  # no preview.jpg yet


def test_a_preview_request_cannot_have_a_panorama_already(client: TestClient) -> None:  # noqa: F811
    error = assert_error(submit(client, stage="panorama", source_world_id="0" * 32), 422, "invalid_request")
    assert "stage" in json.dumps(error)


def test_unfinished_headers_close_the_connection(tmp_path: Path) -> None:
    """uvicorn alone waits forever for the rest of a request's headers; `worldgen serve` runs it
    with a protocol that closes such a connection after the body timeout, and still serves the
    next connection and keep-alive requests."""
    from worldgen.api.header_timeout import header_timeout_protocol

    app = create_app(Settings(data_dir=tmp_path / "data"), run_worker=False)
    with app_in_thread(app, http=header_timeout_protocol(1.0)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            started = time.monotonic()
            assert connection.recv(65536) == b""  # closed by the server
            assert 0.8 < time.monotonic() - started < 5
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            for _ in range(2):  # two requests on one connection, the second after a pause
                connection.sendall(request)
                assert connection.recv(65536).startswith(b"HTTP/1.1 200")
                time.sleep(0.5)
