"""GET /v1/info and the model-dependent defaults: a server on the tiny test models gives requests
that leave out their size a small, quick one (and says its output is noise); one on the real
models gives the full size. The stored request shows what was resolved; idempotency compares the
request as sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.test_api import assert_error
from worldgen.api.app import create_app
from worldgen.config import Settings
from worldgen.defaults import TINY_MARKER
from worldgen.jobs.api_keys import create_key


@pytest.fixture
def tiny(tmp_path: Path, tiny_models: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "tiny", models_dir=tiny_models)
    with TestClient(create_app(settings, run_worker=False)) as client:
        yield client


@pytest.fixture
def full(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=tmp_path / "full"), run_worker=False)) as client:
        yield client


def test_defaults_follow_the_models(tiny: TestClient, full: TestClient) -> None:
    small = tiny.post("/v1/worlds", json={"prompt": "a lake"}).json()
    assert (small["request"]["height"], small["request"]["steps"]) == (128, 4)
    assert tiny.get(f"/v1/worlds/{small['id']}").json()["request"]["height"] == 128
    chosen = tiny.post("/v1/worlds", json={"prompt": "a lake", "height": 64, "steps": 9}).json()["request"]
    assert (chosen["height"], chosen["steps"]) == (64, 9)
    big = full.post("/v1/worlds", json={"prompt": "a lake"}).json()["request"]
    assert (big["height"], big["steps"]) == (960, 50)


def test_idempotency_compares_the_request_as_sent(tiny: TestClient) -> None:
    key = {"Idempotency-Key": "same"}
    first = tiny.post("/v1/worlds", json={"prompt": "a lake"}, headers=key)
    again = tiny.post("/v1/worlds", json={"prompt": "a lake"}, headers=key)
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json()["id"] == first.json()["id"]
    spelled_out = tiny.post("/v1/worlds", json={"prompt": "a lake", "height": 128, "steps": 4}, headers=key)
    assert_error(spelled_out, 409, "idempotency_conflict")  # another body, though it resolves the same


def test_info_on_tiny_models(tiny: TestClient, tiny_models: Path) -> None:
    info = tiny.get("/v1/info")
    assert info.status_code == 200, info.text
    body = info.json()
    print(json.dumps(body, indent=2))
    note = json.loads((tiny_models / TINY_MARKER).read_text())["note"]
    assert body["models"] == {"tiny": True, "note": note} and "noise" in note
    assert body["auth"] == {"required": False} and body["backend"] == "local" and body["version"]
    defaults = body["defaults"]
    assert (defaults["height"], defaults["width"], defaults["steps"]) == (128, 256, 4)
    assert defaults["formats"] == ["glb", "ply"] and defaults["stage"] == "world" and defaults["layered"] is True
    limits = body["limits"]
    assert (limits["min_height"], limits["max_height"], limits["height_multiple"]) == (64, 2048, 16)
    assert limits["max_steps"] == 200 and limits["max_labels"] == 8 and limits["max_objects"] == 16
    assert limits["upload_max_bytes"] == 20 * 1024 * 1024 and limits["max_json_bytes"] == 1024 * 1024
    # the defaults it announces are what a request gets
    request = tiny.post("/v1/worlds", json={"prompt": "a lake"}).json()["request"]
    assert {k: request[k] for k in defaults if k != "width"} == {k: v for k, v in defaults.items() if k != "width"}


def test_info_on_real_models(full: TestClient) -> None:
    body = full.get("/v1/info").json()
    assert body["models"] == {"tiny": False, "note": None}
    assert (body["defaults"]["height"], body["defaults"]["steps"]) == (960, 50)


def test_info_needs_a_key_where_keys_are_needed_and_takes_the_pages_cookie(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with TestClient(create_app(settings, run_worker=False, listen_host="0.0.0.0")) as remote:
        assert_error(remote.get("/v1/info"), 401, "unauthorized")
        _, key = create_key(remote.app.state.worldgen.store, "page")
        with_key = remote.get("/v1/info", headers={"Authorization": f"Bearer {key}"})
        assert with_key.status_code == 200 and with_key.json()["auth"] == {"required": True}
        assert remote.post("/v1/session", json={"key": key}).status_code == 204  # the page's session
        assert remote.get("/v1/info").json()["auth"] == {"required": True}


def test_info_in_the_openapi_document(full: TestClient) -> None:
    spec = full.get("/openapi.json").json()
    operation = spec["paths"]["/v1/info"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InfoOut"
    }
    schemas = spec["components"]["schemas"]
    assert set(schemas["InfoOut"]["required"]) == {"version", "backend", "models", "defaults", "limits", "auth"}
    assert "noise" in schemas["ModelsInfo"]["properties"]["tiny"]["description"]
    assert {"401", "429"} <= set(operation["responses"])
