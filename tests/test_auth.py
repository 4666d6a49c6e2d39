"""API keys, ownership, and the browser defences (cross-site requests, DNS rebinding), on SQLite
and PostgreSQL; the CLI's keys commands and its WORLDGEN_API_KEY against a real server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.helpers import app_in_thread
from tests.test_api import assert_error
from worldgen.api.app import create_app
from worldgen.api.auth import auth_required
from worldgen.config import Settings
from worldgen.jobs.api_keys import create_key, revoke_key

WORLD = {"prompt": "a lake", "seed": 1}


@pytest.mark.parametrize(
    ("mode", "host", "needed"),
    [("auto", "127.0.0.1", False), ("auto", "localhost", False), ("auto", "::1", False), ("auto", None, False),
     ("auto", "0.0.0.0", True), ("auto", "10.0.0.5", True), ("required", "127.0.0.1", True), ("off", "0.0.0.0", False)],
)  # fmt: skip
def test_when_a_key_is_needed(mode: str, host: str | None, needed: bool) -> None:
    assert auth_required(mode, host) is needed


@pytest.fixture
def remote(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    """The app as `worldgen serve --host 0.0.0.0` makes it (auth=auto: keys required)."""
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    with TestClient(create_app(settings, run_worker=False, listen_host="0.0.0.0")) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_are_required_off_loopback_and_worlds_belong_to_their_key(remote: TestClient) -> None:
    store = remote.app.state.worldgen.store
    _, alice = create_key(store, "alice")
    _, bob = create_key(store, "bob")
    _, admin = create_key(store, "ops", admin=True)
    error = assert_error(remote.post("/v1/worlds", json=WORLD), 401, "unauthorized")
    assert "API key" in error["message"]
    assert_error(remote.get("/v1/worlds", headers=bearer("wg_not-a-key")), 401, "unauthorized")
    assert_error(remote.get("/v1/worlds", headers={"Authorization": "Basic abc"}), 401, "unauthorized")
    world = remote.post("/v1/worlds", json=WORLD, headers=bearer(alice)).json()
    assert remote.get(f"/v1/worlds/{world['id']}", headers=bearer(alice)).status_code == 200
    for path in (
        f"/v1/worlds/{world['id']}",
        f"/v1/worlds/{world['id']}/artifacts",
        f"/v1/worlds/{world['id']}/events",
    ):
        assert_error(remote.get(path, headers=bearer(bob)), 404, "not_found")
    assert_error(remote.post(f"/v1/worlds/{world['id']}/cancel", headers=bearer(bob)), 404, "not_found")
    assert_error(remote.delete(f"/v1/worlds/{world['id']}", headers=bearer(bob)), 404, "not_found")
    assert remote.get("/v1/worlds", headers=bearer(bob)).json()["items"] == []
    assert [w["id"] for w in remote.get("/v1/worlds", headers=bearer(admin)).json()["items"]] == [world["id"]]
    assert remote.get(f"/v1/worlds/{world['id']}", headers=bearer(admin)).status_code == 200
    relayer = remote.post("/v1/worlds", json={"source_world_id": world["id"]}, headers=bearer(bob))
    assert_error(relayer, 422, "invalid_request")  # another key's world is not a source either
    assert remote.get("/healthz").status_code == 200  # health stays open
    revoke_key(store, "alice")
    assert_error(remote.get("/v1/worlds", headers=bearer(alice)), 401, "unauthorized")


def test_idempotency_keys_are_per_api_key(remote: TestClient) -> None:
    store = remote.app.state.worldgen.store
    _, alice = create_key(store, "alice")
    _, bob = create_key(store, "bob")
    first = remote.post("/v1/worlds", json=WORLD, headers={**bearer(alice), "Idempotency-Key": "k1"})
    other = remote.post("/v1/worlds", json=WORLD, headers={**bearer(bob), "Idempotency-Key": "k1"})
    assert first.status_code == other.status_code == 202 and first.json()["id"] != other.json()["id"]
    again = remote.post("/v1/worlds", json=WORLD, headers={**bearer(alice), "Idempotency-Key": "k1"})
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"


def test_keys_are_stored_only_as_hashes(remote: TestClient) -> None:
    store = remote.app.state.worldgen.store
    record, key = create_key(store, "alice")
    assert key.startswith("wg_") and len(key) > 40 and record.prefix == key[:10]
    with store.engine.connect() as connection:
        rows = [tuple(str(v) for v in row) for row in connection.execute(text("SELECT * FROM api_keys"))]
    assert not any(key in value for row in rows for value in row)


def test_the_embedded_default_needs_no_key(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with TestClient(create_app(settings, run_worker=False, listen_host="127.0.0.1"), base_url="http://localhost") as c:
        assert c.post("/v1/worlds", json=WORLD).status_code == 202


@pytest.fixture
def loopback(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data")
    app = create_app(settings, run_worker=False, listen_host="127.0.0.1")
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        yield client


def test_cross_site_requests_cannot_change_anything(loopback: TestClient) -> None:
    """The probe's cross-site POST cancelled a world and uploaded a file; browsers send Origin."""
    world = loopback.post("/v1/worlds", json=WORLD).json()
    evil = {"Origin": "http://evil.example"}
    assert_error(loopback.post(f"/v1/worlds/{world['id']}/cancel", headers=evil), 403, "cross_site")
    assert_error(loopback.post("/v1/uploads", files={"file": ("a.png", b"x")}, headers=evil), 403, "cross_site")
    assert_error(loopback.delete(f"/v1/worlds/{world['id']}", headers={"Sec-Fetch-Site": "cross-site"}), 403)
    assert loopback.get(f"/v1/worlds/{world['id']}", headers=evil).status_code == 200  # reading is not a change
    same = {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}
    assert loopback.post(f"/v1/worlds/{world['id']}/cancel", headers=same).status_code == 200


def test_dns_rebinding_is_refused_on_loopback(loopback: TestClient) -> None:
    assert_error(loopback.get("/v1/worlds", headers={"Host": "rebind.evil.example"}), 400, "bad_host")
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert loopback.get("/v1/worlds", headers={"Host": host}).status_code == 200, host


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worldgen", *args], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_keys_cli_and_the_client_sending_its_key(tmp_path: Path) -> None:
    env = {**os.environ, "WORLDGEN_DATA_DIR": str(tmp_path / "data")}
    env.pop("WORLDGEN_API_KEY", None)
    made = _cli("keys", "create", "laptop", env=env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("wg_") and "shown once" in made.stderr
    listed = _cli("keys", "list", env=env)
    assert "laptop" in listed.stdout and "active" in listed.stdout and key not in listed.stdout
    app = create_app(
        Settings(data_dir=tmp_path / "data"), run_worker=False, listen_host="0.0.0.0"
    )  # as if off loopback
    with app_in_thread(app) as port:
        url = f"http://127.0.0.1:{port}"
        refused = _cli("jobs", "--server", url, env=env)
        assert refused.returncode != 0 and "401" in refused.stderr
        allowed = _cli("jobs", "--server", url, env={**env, "WORLDGEN_API_KEY": key})
        assert allowed.returncode == 0, allowed.stderr
    hooked = _cli("keys", "create", "bot", "--webhook", "https://hooks.example/worldgen", env=env)
    assert hooked.returncode == 0 and "https://hooks.example/worldgen" in hooked.stderr and "whsec_" in hooked.stderr
    revoked = _cli("keys", "revoke", "laptop", env=env)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert "revoked" in _cli("keys", "list", env=env).stdout
    missing = _cli("keys", "revoke", "nobody", env=env)
    assert missing.returncode == 2 and "no active key" in missing.stderr


def test_serve_refuses_no_auth_off_loopback(tmp_path: Path) -> None:
    env = {**os.environ, "WORLDGEN_DATA_DIR": str(tmp_path / "data"), "WORLDGEN_AUTH": "off"}
    result = _cli("serve", "--host", "0.0.0.0", "--port", "1", "--no-worker", env=env)
    assert result.returncode == 2 and "--insecure-no-auth" in result.stderr


def test_per_key_limits_answer_429_with_retry_after(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", key_requests_per_second=2, key_active_worlds=2)
    with TestClient(create_app(settings, run_worker=False, listen_host="0.0.0.0")) as remote:
        store = remote.app.state.worldgen.store
        _, alice = create_key(store, "alice")
        _, bob = create_key(store, "bob")
        made = [remote.post("/v1/worlds", json={**WORLD, "seed": i}, headers=bearer(alice)) for i in range(2)]
        assert [r.status_code for r in made] == [202, 202]
        third = remote.post("/v1/worlds", json={**WORLD, "seed": 9}, headers=bearer(alice))
        error = assert_error(third, 429, "rate_limited")
        assert "2 worlds queued or running" in error["message"] and third.headers["Retry-After"] == "30"
        assert remote.post("/v1/worlds", json=WORLD, headers=bearer(bob)).status_code == 202  # per key
        remote.post(f"/v1/worlds/{made[0].json()['id']}/cancel", headers=bearer(alice))
        time.sleep(1.0)  # the bucket refills
        assert remote.post("/v1/worlds", json={**WORLD, "seed": 9}, headers=bearer(alice)).status_code == 202
        statuses = [remote.get("/v1/worlds", headers=bearer(alice)).status_code for _ in range(10)]
        assert 429 in statuses and statuses[0] == 200  # a burst of 2 × 2 per second, then 429
        limited = remote.get("/v1/worlds", headers=bearer(alice))
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def test_uploads_belong_to_their_key(remote: TestClient) -> None:
    from tests.test_api import png

    store = remote.app.state.worldgen.store
    _, alice = create_key(store, "alice")
    _, bob = create_key(store, "bob")
    _, admin = create_key(store, "ops", admin=True)
    made = remote.post("/v1/uploads", files={"file": ("p.png", png(128, 64))}, data={"kind": "panorama"},
                       headers=bearer(alice))  # fmt: skip
    assert made.status_code == 201, made.text
    upload = made.json()["id"]
    assert remote.get(f"/v1/uploads/{upload}", headers=bearer(alice)).status_code == 200
    assert remote.get(f"/v1/uploads/{upload}", headers=bearer(admin)).status_code == 200
    assert_error(remote.get(f"/v1/uploads/{upload}", headers=bearer(bob)), 404, "not_found")
    used = remote.post("/v1/worlds", json={"panorama_upload_id": upload}, headers=bearer(bob))
    assert "no upload" in assert_error(used, 422, "invalid_request")["message"]
    assert remote.post("/v1/worlds", json={"panorama_upload_id": upload}, headers=bearer(alice)).status_code == 202
