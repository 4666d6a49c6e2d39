"""The SageMaker backend against AWS as it really is: errors injected by an HTTP proxy in front of
moto's server (tests/aws_faults.py), one test per error class, each asserting the world's final
status, code and message, and that another queued world is still dispatched."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.aws import processing_jobs, record_requests, set_state
from tests.aws_faults import FaultProxy, fault_proxy
from tests.test_sagemaker import aws, models_url, settings, submit  # noqa: F401  (fixtures)
from worldgen.api.app import create_app
from worldgen.api.routes import integrations
from worldgen.backends.sagemaker.client import SageMakerClient, sagemaker_client
from worldgen.backends.sagemaker.dispatcher import SageMakerDispatcher
from worldgen.backends.sagemaker.errors import Kind, backoff, classify
from worldgen.backends.sagemaker.spec import job_name
from worldgen.config import Settings
from worldgen.jobs.state import JobStatus
from worldgen.jobs.store import utcnow

CREATE, LIST, DESCRIBE, STOP = "CreateProcessingJob", "ListProcessingJobs", "DescribeProcessingJob", "StopProcessingJob"
ZERO_LIMIT = (
    "The account-level service limit 'ml.g5.2xlarge for processing job usage' is 0 Instances, with current "
    "utilization of 0 Instances and a request delta of 1 Instances. Please use AWS Service Quotas to request an "
    "increase for this quota."
)


@pytest.fixture
def faulty(
    aws: str,  # noqa: F811
    settings: Settings,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[TestClient, SageMakerDispatcher, FaultProxy, list[dict[str, Any]]]]:
    with fault_proxy(aws) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", proxy.url)  # S3 stays on moto directly
        with TestClient(create_app(settings, run_worker=False)) as client:
            state = client.app.state.worldgen
            boto = sagemaker_client()  # the production client: botocore's retries off
            sent = record_requests(boto, CREATE)
            dispatcher = SageMakerDispatcher(state.store, state.storage, settings, SageMakerClient(boto))
            yield client, dispatcher, proxy, sent


def world(client: TestClient, job: dict[str, Any]) -> dict[str, Any]:
    return client.get(f"/v1/worlds/{job['id']}").json()


def submitted_ids(sent: list[dict[str, Any]]) -> list[str]:
    return [r["Tags"][0]["Value"] for r in sent]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("AccessDeniedException", "User is not authorized to perform: iam:PassRole on resource: worldgen-job"),
        ("ValidationException", "1 validation error detected: Value 'ml.x' at 'instanceType' failed"),
    ],
)
def test_permanent_refusal_fails_the_world_at_once_and_the_next_goes_out(faulty, code: str, message: str) -> None:
    client, dispatcher, proxy, sent = faulty
    proxy.fail(CREATE, 400, code, message)
    refused, other = submit(client, seed=1), submit(client, seed=2)
    dispatcher.tick()
    failed = world(client, refused)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "sagemaker_rejected"
    assert code in failed["error"]["message"] and message in failed["error"]["message"]
    assert world(client, other)["status"] == "starting"  # same tick, not held up
    assert submitted_ids(sent) == [refused["id"], other["id"]]  # the refused one was sent once, not every poll
    assert proxy.calls[CREATE] == 2  # botocore retried nothing
    dispatcher.tick()
    assert proxy.calls[CREATE] == 2


def test_quota_waits_with_the_limit_text_then_fails_at_the_deadline(faulty) -> None:
    client, dispatcher, proxy, _ = faulty
    proxy.fail(CREATE, 400, "ResourceLimitExceeded", "The account-level service limit is 2 Instances", times=2)
    job, other = submit(client, seed=1), submit(client, seed=2)
    dispatcher.tick()
    waiting = dispatcher.store.get(job["id"])
    assert waiting.status is JobStatus.QUEUED and waiting.attempt == 0
    assert "ResourceLimitExceeded" in waiting.message and "2 Instances" in waiting.message
    assert world(client, other)["status"] == "queued"  # the same quota refused it too: it waits as well
    limit = dispatcher.settings.sagemaker_max_queue_seconds
    dispatcher.store.set_fields(job["id"], created_at=utcnow() - timedelta(seconds=limit + 1), not_before=None)
    proxy.fail(CREATE, 400, "ResourceLimitExceeded", "The account-level service limit is 2 Instances")
    dispatcher.tick()
    failed = world(client, job)
    assert failed["status"] == "failed" and failed["error"]["code"] == "quota_exceeded"
    assert "2 Instances" in failed["error"]["message"]
    dispatcher.store.set_fields(other["id"], not_before=None)
    dispatcher.tick()
    assert world(client, other)["status"] == "starting"


def test_a_zero_limit_fails_at_once(faulty) -> None:
    client, dispatcher, proxy, _ = faulty
    proxy.fail(CREATE, 400, "ResourceLimitExceeded", ZERO_LIMIT)
    job, other = submit(client, seed=1), submit(client, seed=2)
    dispatcher.tick()
    failed = world(client, job)
    assert failed["status"] == "failed" and failed["error"]["code"] == "quota_exceeded"
    assert "is 0 Instances" in failed["error"]["message"]
    assert world(client, other)["status"] == "starting"


@pytest.mark.parametrize(
    ("status", "code"), [(400, "ThrottlingException"), (500, "InternalFailure"), (503, "ServiceUnavailable")]
)
def test_throttling_and_5xx_wait_with_backoff_and_one_request(faulty, status: int, code: str) -> None:
    client, dispatcher, proxy, _ = faulty
    proxy.fail(CREATE, status, code, "Rate exceeded" if status == 400 else "We encountered an internal error")
    job, other = submit(client, seed=1), submit(client, seed=2)
    dispatcher.tick()
    waiting = dispatcher.store.get(job["id"])
    assert waiting.status is JobStatus.QUEUED and waiting.attempt == 0 and code in waiting.message
    assert waiting.not_before is not None and waiting.not_before > utcnow() + timedelta(seconds=10)
    assert world(client, other)["status"] == "starting"
    assert proxy.calls[CREATE] == 2  # one HTTP request for the refused call: no hidden retries
    dispatcher.store.set_fields(job["id"], not_before=None)
    dispatcher.tick()
    assert world(client, job)["status"] == "starting"
    limit = dispatcher.settings.sagemaker_max_queue_seconds
    late = submit(client, seed=3)
    dispatcher.store.set_fields(late["id"], created_at=utcnow() - timedelta(seconds=limit + 1))
    proxy.fail(CREATE, status, code, "still failing")
    dispatcher.settings.sagemaker_max_concurrent_jobs = 5
    dispatcher.tick()
    assert world(client, late)["error"]["code"] == "sagemaker_unavailable"


def test_a_failing_listing_or_description_never_stops_the_poll(faulty) -> None:
    client, dispatcher, proxy, _ = faulty
    first = submit(client, seed=1)
    dispatcher.tick()
    set_state(job_name(first["id"], 1), "InProgress")
    proxy.fail(LIST, 400, "ThrottlingException", "Rate exceeded")
    second = submit(client, seed=2)
    dispatcher.tick()  # the listing is throttled: no traceback, and the queued world still goes out
    assert world(client, second)["status"] == "starting"
    assert proxy.calls[LIST] == 1  # one request: botocore did not retry it
    set_state(job_name(first["id"], 1), "Failed", failure_reason="AlgorithmError", exit_message="model_missing: x")
    set_state(job_name(second["id"], 1), "InProgress")
    proxy.fail(DESCRIBE, 400, "ThrottlingException", "Rate exceeded")
    dispatcher.tick()  # describing the first is throttled (unchanged); the second is still synced
    assert world(client, first)["status"] == "starting"
    assert world(client, second)["status"] == "running"
    dispatcher.tick()
    assert world(client, first)["error"]["code"] == "model_missing"


def test_capacity_failure_is_retried_as_a_new_attempt(faulty) -> None:
    client, dispatcher, _, sent = faulty
    job = submit(client)
    dispatcher.tick()
    name = job_name(job["id"], 1)
    set_state(name, "Failed", failure_reason="CapacityError: Unable to provision requested ML compute capacity.")
    dispatcher.tick()
    waiting = dispatcher.store.get(job["id"])
    assert waiting.status is JobStatus.QUEUED and "CapacityError" in waiting.message
    dispatcher.store.set_fields(job["id"], not_before=None)
    dispatcher.tick()
    names = [r["ProcessingJobName"] for r in sent]
    assert names == [name, job_name(job["id"], 2)]  # a new name: SageMaker never reuses one
    assert world(client, job)["status"] == "starting"


def test_out_of_memory_names_the_stage(faulty) -> None:
    client, dispatcher, _, _ = faulty
    job = submit(client)
    dispatcher.tick()
    name = job_name(job["id"], 1)
    set_state(name, "InProgress")
    storage = dispatcher.storage
    import io
    import json

    report = {"stage": "depth", "progress": 0.7, "message": "view 3/12"}
    key = f"runs/{name}/world/{job['id']}/progress.json"  # the batch layout: a folder per world
    storage.put_stream(key, io.BytesIO(json.dumps(report).encode()), "application/json")
    dispatcher.tick()
    set_state(name, "Failed", failure_reason="AlgorithmError: ExitCode 137: the process was killed")
    dispatcher.tick()
    failed = world(client, job)
    assert failed["error"]["code"] == "out_of_memory" and "during depth" in failed["error"]["message"]


def test_a_refused_stop_keeps_the_world_canceling_and_says_why(faulty) -> None:
    client, dispatcher, proxy, _ = faulty
    job, other = submit(client, seed=1), submit(client, seed=2)
    dispatcher.tick()
    for each in (job, other):
        set_state(job_name(each["id"], 1), "InProgress")
    dispatcher.tick()
    client.post(f"/v1/worlds/{job['id']}/cancel")
    proxy.fail(STOP, 400, "AccessDeniedException", "not authorized to perform: sagemaker:StopProcessingJob")
    set_state(job_name(other["id"], 1), "Completed")
    dispatcher.tick()
    stuck = dispatcher.store.get(job["id"])
    assert stuck.status is JobStatus.CANCELING
    assert any("could not stop" in w and "AccessDeniedException" in w for w in stuck.warnings)
    assert world(client, other)["status"] in ("succeeded", "failed")  # synced in the same poll
    dispatcher.tick()  # the stop is sent again and goes through now
    assert processing_jobs()[job_name(job["id"], 1)].processing_job_status == "Stopped"
    dispatcher.tick()
    assert world(client, job)["status"] == "canceled"


def _event(name: str, status: str, source: str = "aws.sagemaker") -> dict[str, Any]:
    return {
        "source": source,
        "detail-type": "SageMaker Processing Job State Change",
        "detail": {"ProcessingJobName": name, "ProcessingJobStatus": status, "FailureReason": "forged"},
    }


def test_events_are_verified_before_they_change_a_world(faulty) -> None:
    client, dispatcher, proxy, _ = faulty
    client.app.state.worldgen.sagemaker = dispatcher.client  # the endpoint's client, through the proxy
    headers = {"X-Worldgen-Events-Secret": "s3cret"}
    job = submit(client)
    dispatcher.tick()
    name = job_name(job["id"], 1)
    set_state(name, "InProgress")
    dispatcher.tick()
    post = lambda body: client.post("/v1/integrations/sagemaker/events", json=body, headers=headers)  # noqa: E731
    forged = post(_event(name, "Failed"))  # SageMaker says InProgress: the world keeps running
    assert forged.status_code == 202 and forged.json()["applied"] is False
    assert world(client, job)["status"] == "running"
    other_source = post(_event(name, "Failed", source="my.app"))
    assert other_source.status_code == 422
    proxy.fail(DESCRIBE, 400, "ThrottlingException", "Rate exceeded")
    set_state(name, "Failed", failure_reason="AlgorithmError", exit_message="internal_error: boom")
    unverified = post(_event(name, "Failed"))
    assert unverified.json()["applied"] is False and "could not verify" in unverified.json()["reason"]
    assert world(client, job)["status"] == "running"
    verified = post(_event(name, "Failed"))
    assert verified.json()["applied"] is True and world(client, job)["error"]["code"] == "internal_error"
    assert integrations.sagemaker(client.app.state.worldgen) is dispatcher.client


def test_classification_table() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

    def client_error(code: str, status: int = 400, message: str = "m") -> ClientError:
        return ClientError(
            {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
        )

    assert classify(client_error("ThrottlingException")).kind is Kind.RETRYABLE
    assert classify(client_error("InsufficientCapacity")).kind is Kind.RETRYABLE
    assert classify(client_error("Whatever", status=502)).kind is Kind.RETRYABLE
    assert classify(client_error("ResourceLimitExceeded")).kind is Kind.QUOTA
    assert classify(client_error("ResourceLimitExceeded", message=ZERO_LIMIT)).zero_limit
    assert not classify(client_error("ResourceLimitExceeded", message="limit is 10 Instances")).zero_limit
    assert classify(client_error("AccessDeniedException")).kind is Kind.PERMANENT
    assert classify(client_error("ValidationException")).kind is Kind.PERMANENT
    assert classify(client_error("SomethingNew")).kind is Kind.PERMANENT
    assert classify(EndpointConnectionError(endpoint_url="x")).kind is Kind.RETRYABLE
    assert classify(ReadTimeoutError(endpoint_url="x"), uncertain_on_timeout=True).kind is Kind.UNCERTAIN
    waits = [backoff(timedelta(seconds=s)).total_seconds() for s in (0, 60, 240, 100000)]
    assert 15 <= waits[0] <= 30 and 30 <= waits[1] <= 60 and 120 <= waits[2] <= 240 and 300 <= waits[3] <= 600


def test_the_production_client_does_not_retry_inside_botocore(aws: str) -> None:  # noqa: F811
    client = sagemaker_client()
    assert client.meta.config.retries["total_max_attempts"] == 1
