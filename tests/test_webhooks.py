"""Webhooks with a real local receiver over HTTP: Standard Webhooks signatures, one delivery per
status change, retries with backoff until the receiver recovers, the delivery log, redelivery,
deliveries that outlive the process that made them, and SSRF refusals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.test_api import assert_error
from worldgen.api.app import create_app
from worldgen.config import Settings
from worldgen.jobs.store import JobStore
from worldgen.request import WorldRequest

SECRET = "whsec_" + base64.b64encode(b"worldgen-test-secret-32-bytes!!!").decode()


class Receiver:
    """A local HTTP endpoint answering the status codes queued in `answers` (then 200)."""

    def __init__(self, answers: list[int]) -> None:
        self.answers, self.received = list(answers), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                code = receiver.answers.pop(0) if receiver.answers else 200
                receiver.received.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                                          "answered": code})  # fmt: skip
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def wait_for(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's side of Standard Webhooks, written from the specification."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(f"v1,{expected}", part) for part in headers["webhook-signature"].split(" "))


def settings_for(tmp_path: Path, **changes: Any) -> Settings:
    values = {"data_dir": tmp_path / "data", "webhook_secret": SECRET, "webhook_allow_private": True,
              "webhook_backoff_seconds": 0.2, **changes}  # fmt: skip
    return Settings(**values)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver([500, 503])  # the first delivery fails twice, then the receiver recovers
    yield hook
    hook.close()


def test_signed_deliveries_retried_until_the_receiver_recovers(tmp_path: Path, receiver: Receiver) -> None:
    with TestClient(create_app(settings_for(tmp_path), run_worker=False)) as client:
        world = client.post("/v1/worlds", json={"prompt": "a lake", "seed": 1, "webhook_url": receiver.url}).json()
        wait_for(lambda: any(r["answered"] == 200 for r in receiver.received))
        client.post(f"/v1/worlds/{world['id']}/cancel")
        wait_for(lambda: sum(r["answered"] == 200 for r in receiver.received) == 2)
        assert [r["answered"] for r in receiver.received] == [500, 503, 200, 200]
        for received in receiver.received:
            assert verify(SECRET, received["headers"], received["body"])
            assert abs(int(received["headers"]["webhook-timestamp"]) - time.time()) < 60
        events = [json.loads(r["body"]) for r in receiver.received if r["answered"] == 200]
        assert [e["type"] for e in events] == ["world.queued", "world.canceled"]
        assert events[0]["data"]["id"] == world["id"] and events[1]["data"]["status"] == "canceled"
        retries = [r["headers"]["webhook-id"] for r in receiver.received[:3]]
        assert len(set(retries)) == 1  # one message, three attempts
        log = client.get(f"/v1/worlds/{world['id']}/webhooks").json()["items"]
        assert [(d["event_type"], d["status"], d["attempts"]) for d in log] == [
            ("world.queued", "delivered", 3), ("world.canceled", "delivered", 1)]  # fmt: skip
        assert log[0]["last_status_code"] == 200 and log[0]["next_attempt_at"] is None
        again = client.post(f"/v1/worlds/{world['id']}/webhooks/{log[0]['id']}/redeliver")
        assert again.status_code == 202
        wait_for(lambda: len(receiver.received) == 5)
        assert receiver.received[4]["headers"]["webhook-id"] == receiver.received[0]["headers"]["webhook-id"]
        missing = client.post(f"/v1/worlds/{world['id']}/webhooks/{'0' * 32}/redeliver")
        assert_error(missing, 404, "not_found")


def test_a_receiver_that_never_recovers_is_given_up(tmp_path: Path) -> None:
    hook = Receiver([500] * 100)
    try:
        settings = settings_for(tmp_path, webhook_retry_hours=1.5 / 3600)  # 1.5 s of retries
        with TestClient(create_app(settings, run_worker=False)) as client:
            world = client.post("/v1/worlds", json={"prompt": "a lake", "seed": 1, "webhook_url": hook.url}).json()

            def given_up() -> bool:
                items = client.get(f"/v1/worlds/{world['id']}/webhooks").json()["items"]
                return items[0]["status"] == "failed"

            wait_for(given_up)
            (delivery,) = client.get(f"/v1/worlds/{world['id']}/webhooks").json()["items"]
            assert delivery["attempts"] >= 2 and delivery["last_status_code"] == 500
            assert "answered 500" in delivery["last_error"]
    finally:
        hook.close()


def test_deliveries_made_elsewhere_are_sent_after_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    """The delivery is written with the status change (here by a worker's store, no API running)."""
    settings = settings_for(tmp_path)
    store = JobStore.open(settings.resolved_database_url)
    job, _ = store.create(WorldRequest(prompt="a lake", seed=1, webhook_url=receiver.url), backend="local")
    store.claim("a-worker", "local")  # a worker takes it: queued → starting
    store.request_cancel(job.id)
    store.close()
    receiver.answers.clear()
    with TestClient(create_app(settings, run_worker=False)):
        wait_for(lambda: len(receiver.received) == 3)
    types = [json.loads(r["body"])["type"] for r in receiver.received]
    assert types == ["world.queued", "world.starting", "world.canceling"]


@pytest.mark.parametrize(
    ("url", "problem"),
    [("http://127.0.0.1:9/hook", "internal address"), ("http://10.1.2.3/hook", "internal address"),
     ("http://169.254.169.254/latest", "internal address"), ("http://[::1]/x", "internal address"),
     ("ftp://example.com/x", "http(s)")],
)  # fmt: skip
def test_internal_targets_are_refused(tmp_path: Path, url: str, problem: str) -> None:
    with TestClient(create_app(settings_for(tmp_path, webhook_allow_private=False), run_worker=False)) as client:
        error = assert_error(client.post("/v1/worlds", json={"prompt": "a", "webhook_url": url}), 422)
        assert problem in error["message"] and "webhook_url" in json.dumps(error["details"])


def test_webhooks_need_a_secret(tmp_path: Path, receiver: Receiver) -> None:
    with TestClient(create_app(settings_for(tmp_path, webhook_secret=None), run_worker=False)) as client:
        error = assert_error(client.post("/v1/worlds", json={"prompt": "a", "webhook_url": receiver.url}), 422)
        assert "WORLDGEN_WEBHOOK_SECRET" in error["message"]


def test_a_keys_default_webhook_is_signed_with_the_keys_own_secret(tmp_path: Path, receiver: Receiver) -> None:
    """`worldgen keys create NAME --webhook URL`: the key's worlds that name no webhook_url send to
    its URL, signed with its own secret (a server-wide one is not needed)."""
    from worldgen.jobs.api_keys import create_key, webhook_secret

    receiver.answers.clear()
    settings = settings_for(tmp_path, webhook_secret=None)
    with TestClient(create_app(settings, run_worker=False, listen_host="0.0.0.0")) as client:
        store = client.app.state.worldgen.store
        record, key = create_key(store, "bot", webhook_url=receiver.url)
        _, other = create_key(store, "plain")
        secret = webhook_secret(store, record.id)
        assert secret and secret.startswith("whsec_")
        world = client.post("/v1/worlds", json={"prompt": "a lake", "seed": 1},
                            headers={"Authorization": f"Bearer {key}"}).json()  # fmt: skip
        assert world["request"]["webhook_url"] == receiver.url
        wait_for(lambda: len(receiver.received) == 1)
        received = receiver.received[0]
        assert verify(secret, received["headers"], received["body"]) and not verify(SECRET, received["headers"],
                                                                                      received["body"])  # fmt: skip
        plain = client.post("/v1/worlds", json={"prompt": "a", "webhook_url": receiver.url},
                            headers={"Authorization": f"Bearer {other}"})  # fmt: skip
        assert "WORLDGEN_WEBHOOK_SECRET" in assert_error(plain, 422)["message"]  # no secret of its own, none global
