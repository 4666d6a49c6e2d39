"""The OpenAPI document tells the truth (issue 16): error bodies are ErrorOut, every status a route
or a middleware answers is documented, streams and metrics have their real media types, the
internal SageMaker route is not public, 405s carry Allow, /docs and /redoc work offline; and a
schemathesis run over the whole document finds nothing it says that the server does not do."""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.test_api import assert_error
from worldgen.api import openapi
from worldgen.api.app import create_app
from worldgen.api.schemas import ErrorOut
from worldgen.config import Settings
from worldgen.jobs.api_keys import create_key

ERROR_REF = "#/components/schemas/ErrorOut"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=tmp_path / "data"), run_worker=False)) as test_client:
        yield test_client


@pytest.fixture
def spec(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield path, method.upper(), operation


def error_schema_of(response: dict[str, Any]) -> str | None:
    return response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")


def test_errors_are_documented_as_they_are_sent(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert "HTTPValidationError" not in json.dumps(spec)
    assert schemas["ErrorOut"]["required"] == ["error"]
    assert set(schemas["ErrorContent"]["required"]) == {"code", "message", "details"}
    for path, method, operation in operations(spec):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert error_schema_of(response) == ERROR_REF, (method, path, status)
    # a {detail} property appears in no schema
    assert not any("detail" in schema.get("properties", {}) for schema in schemas.values())


def test_every_status_a_route_or_middleware_answers_is_documented(spec: dict[str, Any]) -> None:
    v1 = [(path, method, op) for path, method, op in operations(spec) if path.startswith("/v1/")]
    assert len(v1) >= 13
    for path, method, operation in operations(spec):
        responses = operation["responses"]
        assert "400" in responses, (method, path)  # bad_host, from the Host allow-list
        if path == "/v1/session":  # where the page hands in its key: not behind one itself
            assert ("401" in responses) is (method == "POST") and "429" not in responses
        elif path.startswith("/v1/"):
            assert {"401", "429"} <= set(responses), (method, path)
            assert "Retry-After" in responses["429"]["headers"] and "WWW-Authenticate" in responses["401"]["headers"]
            assert operation["security"] == [{"apiKey": []}, {}]  # optional: this server needs no key
        if method in ("POST", "DELETE"):
            assert {"403", "408", "413"} <= set(responses), (method, path)
        if "{world_id}" in path:
            assert {"404", "410"} <= set(responses), (method, path)
    paths = spec["paths"]
    assert {"409", "410", "413", "415", "422", "429"} <= set(paths["/v1/worlds"]["post"]["responses"])
    assert "invalid_json" in paths["/v1/worlds"]["post"]["responses"]["422"]["description"]
    assert "Content-Type: application/json" in paths["/v1/worlds"]["post"]["responses"]["415"]["description"]
    archive = paths["/v1/worlds/{world_id}/archive"]["get"]["responses"]
    assert list(archive["200"]["content"]) == ["application/zip"] and "Content-Disposition" in archive["200"]["headers"]
    assert {"404", "409", "410"} <= set(archive)
    assert "200" in paths["/v1/info"]["get"]["responses"] and "422" not in paths["/v1/info"]["get"]["responses"]
    assert "idempotency_conflict" in paths["/v1/worlds"]["post"]["responses"]["409"]["description"]
    assert "422" in paths["/v1/worlds"]["get"]["responses"]
    assert "409" in paths["/v1/worlds/{world_id}/cancel"]["post"]["responses"]
    assert {"400", "413", "415", "422"} <= set(paths["/v1/uploads"]["post"]["responses"])
    assert "404" in paths["/v1/uploads/{upload_id}"]["get"]["responses"]
    assert "503" in paths["/readyz"]["get"]["responses"]
    artifact = paths["/v1/worlds/{world_id}/artifacts/{name}"]["get"]["responses"]
    assert "307" in artifact and "*/*" in artifact["200"]["content"]
    # 422 only where a request can fail validation (a plain string path parameter cannot)
    assert "422" not in paths["/v1/worlds/{world_id}"]["get"]["responses"]
    assert "422" not in paths["/v1/events"]["get"]["responses"]


def test_streams_and_metrics_have_their_media_types(client: TestClient, spec: dict[str, Any]) -> None:
    for path in ("/v1/events", "/v1/worlds/{world_id}/events"):
        content = spec["paths"][path]["get"]["responses"]["200"]["content"]
        assert list(content) == ["text/event-stream"]
        assert content["text/event-stream"]["schema"]["required"] == ["event", "data"]
    assert list(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    world = client.post("/v1/worlds", json={"prompt": "a lake"}).json()
    client.post(f"/v1/worlds/{world['id']}/cancel")
    with client.stream("GET", f"/v1/worlds/{world['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")


def test_the_sagemaker_events_route_is_internal(client: TestClient, spec: dict[str, Any]) -> None:
    assert not [path for path in spec["paths"] if "integrations" in path]
    assert_error(client.post("/v1/integrations/sagemaker/events", json={}), 404, "not_found")  # still served


def test_error_bodies_are_error_out(client: TestClient) -> None:
    for response in (
        client.post("/v1/worlds", json={}),
        client.get("/v1/worlds/nope"),
        client.put("/v1/worlds"),
        client.post("/v1/worlds", content=b"x" * (2 << 20), headers={"content-type": "application/json"}),
        client.post("/v1/worlds", json={"prompt": "a"}, headers={"Origin": "https://evil.example"}),
    ):
        assert response.status_code >= 400
        ErrorOut.model_validate(response.json(), strict=True)


def test_a_405_says_what_is_allowed(client: TestClient) -> None:
    """Every method of every route on the path (Starlette's own 405 named only the first route's)."""
    for method, path, allowed in (
        ("PUT", "/v1/worlds", "GET, POST"),
        ("PATCH", "/v1/worlds/abc", "DELETE, GET"),
        ("GET", "/v1/worlds/abc/cancel", "POST"),
        ("POST", "/static/app.js", "GET, HEAD"),
        ("DELETE", "/openapi.json", "GET, HEAD"),
    ):
        response = client.request(method, path)
        assert_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == allowed, (method, path)


def test_keys_in_the_spec_and_the_401(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data"), run_worker=False, listen_host="0.0.0.0")
    with TestClient(app) as remote:
        spec = remote.get("/openapi.json").json()
        assert spec["paths"]["/v1/worlds"]["get"]["security"] == [{"apiKey": []}]  # this server needs a key
        assert "security" not in spec["paths"]["/healthz"]["get"]
        scheme = spec["components"]["securitySchemes"]["apiKey"]
        assert scheme["type"] == "http" and scheme["scheme"] == "bearer" and "requires" in scheme["description"]
        response = remote.get("/v1/worlds")
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


URL = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


def test_the_docs_pages_use_local_assets(client: TestClient) -> None:
    missing = openapi._missing_assets(openapi.SWAGGER_JS, openapi.SWAGGER_CSS, openapi.REDOC_JS, openapi.FAVICON)
    # The web build (scripts/bootstrap, run by the README's test command) copies them from the npm
    # packages swagger-ui-dist and redoc: their absence is a failure, not a reason to skip.
    assert not missing, f"the API docs' assets are not built ({', '.join(missing)} not in {openapi.DOCS_ASSETS})"
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        assert response.headers["content-security-policy"] == openapi.LOCAL_ONLY  # and nothing loads from elsewhere
        assert not re.search(r"https?://", response.text), page  # no CDN, no Google Fonts
        urls = URL.findall(response.text)
        assert urls and all(url.startswith(openapi.ASSETS_URL + "/") for url in urls), urls
        for url in urls:
            asset = client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 100, url
        assert "/openapi.json" in response.text
    for name, media_type in ((openapi.SWAGGER_JS, "text/javascript"), (openapi.SWAGGER_CSS, "text/css")):
        assert client.get(f"{openapi.ASSETS_URL}/{name}").headers["content-type"].startswith(media_type)


def test_the_docs_pages_say_when_their_assets_are_not_built(client: TestClient, monkeypatch) -> None:
    monkeypatch.setattr(openapi, "DOCS_ASSETS", Path("/nonexistent/worldgen-docs"))
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 503 and "scripts/bootstrap" in response.text
        assert not re.search(r"(?:src|href)=[\"']https?://", response.text)
    error = assert_error(client.get(f"{openapi.ASSETS_URL}/{openapi.REDOC_JS}"), 404, "not_found")
    assert "scripts/bootstrap" in error["message"]
    assert_error(client.get(f"{openapi.ASSETS_URL}/..%2F..%2Fconfig.py"), 404, "not_found")
    assert_error(client.get(f"{openapi.ASSETS_URL}/secrets.txt"), 404, "not_found")


# Schemathesis over the whole document, every check.

EXAMPLES = 50
"""Examples per operation and phase: about 20 s a run."""

CONFIG = """
seed = 16
max-stream-events = 1       # the event streams never end by themselves: their first event is checked
request-timeout = 5
{headers}
[generation]
max-examples = {examples}
deterministic = true
database = "none"

[checks]
enabled = true
# a deleted world's 410 (its tombstone) is as right as an unknown id's 404
positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "410", "429"]

# What JSON Schema cannot say: a prompt is needed unless a panorama is given, upload and world ids
# must exist, a cursor is one the server made; an upload must be a readable image of a kind and size.
[[operations]]
include-name = ["POST /v1/worlds", "GET /v1/worlds"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "409", "410", "422", "429"]

[[operations]]
include-name = "POST /v1/uploads"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "413", "415", "422", "429"]
"""


def run_schemathesis(app: Any, headers: str = "") -> dict[str, Any]:
    """One engine run (examples, coverage, fuzzing and stateful phases) against the ASGI app."""
    import hypothesis.configuration
    import schemathesis
    from schemathesis.config import SchemathesisConfig
    from schemathesis.engine import events, from_schema
    from schemathesis.python import asgi

    config = SchemathesisConfig.from_str(CONFIG.format(headers=headers, examples=EXAMPLES))
    home = hypothesis.configuration.storage_directory(intent_to_write=False).home_directory
    with tempfile.TemporaryDirectory() as storage:
        hypothesis.configuration.set_hypothesis_home_dir(storage)  # no .hypothesis/ in the checkout
        try:
            schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
            figures: dict[str, Any] = {"operations": len(list(schema.get_all_operations())), "examples": 0,
                                       "checks": 0, "failures": [], "errors": [], "statuses": {}}  # fmt: skip
            started = time.monotonic()
            for event in from_schema(schema).execute():
                if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
                    recorder = event.recorder
                    figures["examples"] += len(recorder.cases)
                    for interaction in recorder.interactions.values():
                        if interaction.response is not None:
                            status = interaction.response.status_code
                            figures["statuses"][status] = figures["statuses"].get(status, 0) + 1
                    for checks in recorder.checks.values():
                        for check in checks:
                            figures["checks"] += 1
                            if check.status.value == "failure" and check.failure_info is not None:
                                info = check.failure_info
                                figures["failures"].append(f"{recorder.label}: {check.name}: "
                                                           f"{info.failure.title}\n{info.code_sample}")  # fmt: skip
                elif isinstance(event, events.NonFatalError):
                    figures["errors"].append(f"{event.label}: {event.value!r}")
                elif isinstance(event, events.FatalError):
                    raise event.exception
            figures["seconds"] = round(time.monotonic() - started, 1)
        finally:
            asgi.shutdown_lifespans()
            hypothesis.configuration.set_hypothesis_home_dir(home)
    return figures


def _report(figures: dict[str, Any]) -> str:
    statuses = ", ".join(f"{status}×{count}" for status, count in sorted(figures["statuses"].items()))
    return (f"schemathesis: {figures['operations']} operations, {figures['examples']} examples, "
            f"{figures['checks']} checks, {len(figures['failures'])} failures, {len(figures['errors'])} errors "
            f"in {figures['seconds']} s; statuses {statuses}")  # fmt: skip


def test_schemathesis_finds_nothing_untrue(tmp_path: Path) -> None:
    pytest.importorskip("schemathesis")
    figures = run_schemathesis(create_app(Settings(data_dir=tmp_path / "data"), run_worker=False))
    print(_report(figures))
    assert figures["operations"] >= 15 and figures["examples"] > 20 * figures["operations"]
    assert not figures["failures"], "\n\n".join(dict.fromkeys(figures["failures"]))
    assert not figures["errors"], figures["errors"]


def test_schemathesis_with_api_keys(tmp_path: Path) -> None:
    """The same run where keys are required (`worldgen serve --host 0.0.0.0`), with a key."""
    pytest.importorskip("schemathesis")
    from worldgen.jobs.store import JobStore

    settings = Settings(data_dir=tmp_path / "data", key_requests_per_second=1e6)
    settings.data_dir.mkdir(parents=True)
    store = JobStore.open(settings.resolved_database_url)
    _, key = create_key(store, "schemathesis")
    store.close()
    app = create_app(settings, run_worker=False, listen_host="0.0.0.0")
    figures = run_schemathesis(app, headers=f'[headers]\nAuthorization = "Bearer {key}"\n')
    print(_report(figures))
    assert not figures["failures"], "\n\n".join(dict.fromkeys(figures["failures"]))
    assert not figures["errors"], figures["errors"]
