"""The production backend against moto's servers over HTTP: S3 artifacts, the CreateProcessingJob
request, dispatch under quotas, status sync by polling and by EventBridge events."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np
import pytest
from botocore.exceptions import ReadTimeoutError
from fastapi.testclient import TestClient
from PIL import Image

from tests.aws import processing_jobs, record_requests, run_like_sagemaker, set_state
from worldgen.api.app import create_app
from worldgen.backends.sagemaker.client import SageMakerClient
from worldgen.backends.sagemaker.dispatcher import SageMakerDispatcher, job_settings
from worldgen.backends.sagemaker.spec import (
    CONTAINER_ENTRYPOINT,
    InvalidProcessingJob,
    build_request,
    job_name,
    raw_models_gb,
    volume_size_gb,
)
from worldgen.config import Settings
from worldgen.jobs.state import JobStatus
from worldgen.jobs.store import utcnow
from worldgen.models.mirror import mirror
from worldgen.models.resolver import ModelResolver
from worldgen.storage.s3 import S3ArtifactStore

BUCKET = "worldgen-test"
ROLE = "arn:aws:iam::123456789012:role/worldgen-job"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/worldgen:0.1.0"


@pytest.fixture(scope="module")
def aws() -> Iterator[str]:
    from tests.aws import moto_s3

    with moto_s3(BUCKET) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def models_url(aws: str, tiny_models: Path) -> str:
    url = f"s3://{BUCKET}/models"
    mirror(ModelResolver(tiny_models), url)
    return url


@pytest.fixture
def settings(tmp_path: Path, models_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
        storage_url=f"s3://{BUCKET}/run-{tmp_path.name}", backend="sagemaker", models_url=models_url,
        sagemaker_role_arn=ROLE, sagemaker_image_uri=IMAGE, sagemaker_events_secret="s3cret",
        sagemaker_max_concurrent_jobs=2, sagemaker_batch_size=1, sagemaker_batch_wait_seconds=0,
    )  # fmt: skip


@pytest.fixture
def service(settings: Settings) -> Iterator[tuple[TestClient, SageMakerDispatcher, list[dict[str, Any]]]]:
    with TestClient(create_app(settings, run_worker=False)) as client:
        state = client.app.state.worldgen
        boto = boto3.client("sagemaker")
        sent = record_requests(boto, "CreateProcessingJob")
        dispatcher = SageMakerDispatcher(state.store, state.storage, settings, SageMakerClient(boto))
        yield client, dispatcher, sent


def submit(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/worlds", json={"prompt": "a harbour", "height": 64, "steps": 2, "seed": 3, **body})
    assert response.status_code == 202, response.text
    return response.json()


# ---- S3 artifacts ---------------------------------------------------------------------------------


def test_s3_store_multipart_sha256_and_presigned_urls(aws: str, tmp_path: Path, monkeypatch) -> None:
    import worldgen.storage.s3 as s3_module

    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(s3_module, "MULTIPART_CHUNK", 5 * 1024 * 1024)
    from worldgen.storage.s3 import s3_client

    client = s3_client()
    parts: list[str] = []
    client.meta.events.register("before-send.s3.UploadPart", lambda request, **_: parts.append(request.url))
    storage = S3ArtifactStore(f"s3://{BUCKET}/store-test", client)
    big = tmp_path / "big.ply"
    big.write_bytes(np.random.default_rng(0).bytes(12 * 1024 * 1024))
    info = storage.put_file("worlds/j/mesh_layer0.ply", big)
    assert len(parts) == 3  # multipart: 5 + 5 + 2 MiB
    assert info.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    assert storage.info("worlds/j/mesh_layer0.ply") == info
    storage.put_stream("worlds/j/world.glb", io.BytesIO(b"glTF..."))
    assert [i.name for i in storage.list("worlds/j/")] == ["mesh_layer0.ply", "world.glb"]
    url = storage.download_url("worlds/j/world.glb", 60)
    assert "X-Amz-Expires=60" in url and httpx.get(url).content == b"glTF..."
    assert storage.delete_prefix("worlds/j") == 2 and storage.list("worlds/j/") == []
    with pytest.raises(FileNotFoundError):
        storage.open("worlds/j/world.glb")


# ---- the request ------------------------------------------------------------------------------------


def test_default_request_and_volume(settings: Settings, models_url: str) -> None:
    storage = S3ArtifactStore(settings.resolved_storage_url)
    spec = job_settings(settings, storage)
    request = build_request(spec, "a" * 32, 1, {"u1": "uploads/u1/"})
    prefix = storage.prefix
    assert request["ProcessingJobName"] == "wg-" + "a" * 32 + "-1"
    assert request["AppSpecification"] == {"ImageUri": IMAGE, "ContainerEntrypoint": CONTAINER_ENTRYPOINT}
    assert request["ProcessingResources"]["ClusterConfig"] == {
        "InstanceCount": 1, "InstanceType": "ml.g5.2xlarge", "VolumeSizeInGB": volume_size_gb(raw_models_gb())
    }  # fmt: skip
    assert volume_size_gb(raw_models_gb()) == 102  # the full real model set: 72.4 GB + outputs + margin
    inputs = {i["InputName"]: (i["S3Input"]["S3Uri"], i["S3Input"]["LocalPath"]) for i in request["ProcessingInputs"]}
    assert inputs == {
        "request": (f"s3://{BUCKET}/{prefix}runs/wg-{'a' * 32}-1/request/", "/opt/ml/processing/input/request"),
        "upload-u1": (f"s3://{BUCKET}/{prefix}uploads/u1/", "/opt/ml/processing/input/uploads/u1"),
    }
    output = request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]
    assert output["S3UploadMode"] == "Continuous" and output["LocalPath"] == "/opt/ml/processing/output/world"
    assert request["Environment"]["WORLDGEN_PRICE_PER_HOUR"] == "1.515"
    assert request["Environment"]["WORLDGEN_MODELS_URL"] == f"{models_url}/"  # streamed by the container
    assert {"Key": "worldgen:job-id", "Value": "a" * 32} in request["Tags"]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"sagemaker_role_arn": "worldgen-role"}, "RoleArn"),
        ({"sagemaker_image_uri": "not an image"}, "ImageUri"),
        ({"sagemaker_instance_type": "ml.m5.xlarge"}, "has no GPU"),
        ({"sagemaker_instance_type": "g5.2xlarge"}, "not a SageMaker instance type"),
        ({"sagemaker_volume_gb": 20000}, "VolumeSizeInGB"),
    ],
)
def test_invalid_requests_are_rejected_locally(settings: Settings, changes: dict, problem: str) -> None:
    spec = job_settings(settings.model_copy(update=changes), S3ArtifactStore(settings.resolved_storage_url))
    with pytest.raises(InvalidProcessingJob, match=problem):
        build_request(spec, "b" * 32, 1, {})


def test_request_limits(settings: Settings) -> None:
    spec = job_settings(settings, S3ArtifactStore(settings.resolved_storage_url))
    too_long = spec.__class__(**{**spec.__dict__, "environment": {"X": "v" * 300}})
    with pytest.raises(InvalidProcessingJob, match="at most 256"):
        build_request(too_long, "c" * 32, 1, {})
    with pytest.raises(InvalidProcessingJob, match="ProcessingInputs"):
        build_request(spec, "c" * 32, 1, {f"u{i}": f"uploads/u{i}/" for i in range(10)})  # + the request: 11
    runtime = spec.__class__(**{**spec.__dict__, "max_runtime_seconds": 500000})
    with pytest.raises(InvalidProcessingJob, match="MaxRuntimeInSeconds"):
        build_request(runtime, "c" * 32, 1, {})


def test_invalid_configuration_fails_the_job_without_a_request(settings: Settings, tmp_path: Path) -> None:
    bad = settings.model_copy(update={"sagemaker_instance_type": "ml.c5.xlarge"})
    with TestClient(create_app(bad, run_worker=False)) as client:
        state = client.app.state.worldgen
        boto = boto3.client("sagemaker")
        sent = record_requests(boto, "CreateProcessingJob")
        dispatcher = SageMakerDispatcher(state.store, state.storage, bad, SageMakerClient(boto))
        job = submit(client)
        dispatcher.tick()
        failed = client.get(f"/v1/worlds/{job['id']}").json()
        assert failed["status"] == "failed" and failed["error"]["code"] == "invalid_sagemaker_request"
        assert sent == []


# ---- end to end -------------------------------------------------------------------------------------


def test_submit_run_complete_and_download(service, tmp_path: Path) -> None:
    client, dispatcher, sent = service
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)).save(png, format="PNG")
    upload = client.post("/v1/uploads", files={"file": ("photo.png", png.getvalue())}).json()
    job = submit(client, image_upload_id=upload["id"], formats=["glb", "ply"])
    job = submit(client, formats=["glb", "ply"])  # the text job is the one we follow; both are submitted
    dispatcher.tick()
    assert len(sent) == 2
    request = next(r for r in sent if r["ProcessingJobName"] == job_name(job["id"], 1))
    expected = build_request(dispatcher.job_settings, job["id"], 1, {})
    assert request == json.loads(json.dumps(expected))  # exactly the request built and validated
    name = request["ProcessingJobName"]
    set_state(name, "InProgress")
    dispatcher.tick()
    assert client.get(f"/v1/worlds/{job['id']}").json()["status"] == "running"

    result = run_like_sagemaker(request, tmp_path / "ml")
    assert result.returncode == 0, result.stdout + result.stderr
    dispatcher.tick()  # still InProgress: the world's own progress.json says it is done, so it is published
    done = client.get(f"/v1/worlds/{job['id']}").json()
    assert done["status"] == "succeeded" and done["progress"] == 1.0, done
    set_state(name, "Completed")
    dispatcher.tick()
    assert client.get(f"/v1/worlds/{job['id']}").json() == done  # the job's end changes nothing
    artifacts = client.get(f"/v1/worlds/{job['id']}/artifacts").json()["items"]
    assert {"world.glb", "mesh_layer0.ply", "manifest.json", "panorama.png"} <= {a["name"] for a in artifacts}
    for artifact in artifacts:
        assert artifact["download_url"].startswith("http") and artifact["expires_at"]  # presigned, with its expiry
        redirect = client.get(artifact["url"], follow_redirects=False)
        assert redirect.status_code == 307
        body = httpx.get(redirect.headers["location"]).content
        assert hashlib.sha256(body).hexdigest() == artifact["sha256"]
    photo_job = next(r for r in sent if r["ProcessingJobName"] != name)
    assert any(i["InputName"].startswith("upload-") for i in photo_job["ProcessingInputs"])


def test_failed_job_carries_the_reason(service) -> None:
    client, dispatcher, _ = service
    job = submit(client)
    dispatcher.tick()
    name = job_name(job["id"], 1)
    set_state(name, "Failed", failure_reason="AlgorithmError: see the logs",
              exit_message="model_missing: model 'flux-dev' is incomplete")  # fmt: skip
    dispatcher.tick()
    failed = client.get(f"/v1/worlds/{job['id']}").json()
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "model_missing"
    assert "flux-dev" in failed["error"]["message"] and "AlgorithmError" in failed["error"]["message"]


def test_cancel_stops_the_processing_job(service) -> None:
    client, dispatcher, _ = service
    job = submit(client)
    dispatcher.tick()
    name = job_name(job["id"], 1)
    set_state(name, "InProgress")
    dispatcher.tick()
    assert client.post(f"/v1/worlds/{job['id']}/cancel").json()["status"] == "canceling"
    dispatcher.tick()  # StopProcessingJob (moto marks the job Stopped)
    assert processing_jobs()[name].processing_job_status == "Stopped"
    dispatcher.tick()
    assert client.get(f"/v1/worlds/{job['id']}").json()["status"] == "canceled"


# ---- quotas and retries -----------------------------------------------------------------------------


def test_quota_keeps_the_job_queued_then_submits(service) -> None:
    client, dispatcher, sent = service
    refusals = [1]

    def refuse(**_: Any) -> Any:
        if refusals:
            refusals.pop()
            error = {"Error": {"Code": "ResourceLimitExceeded", "Message": "account-level service limit"}}
            return (httpx.Response(400), error)  # botocore turns a parsed error into a ClientError
        return None

    dispatcher.client.client.meta.events.register("before-call.sagemaker.CreateProcessingJob", refuse)
    job = submit(client)
    dispatcher.tick()
    queued = dispatcher.store.get(job["id"])
    assert queued.status is JobStatus.QUEUED and queued.attempt == 0 and queued.not_before is not None
    assert queued.message == "waiting: SageMaker quota: ResourceLimitExceeded: account-level service limit"
    dispatcher.tick()
    assert dispatcher.store.get(job["id"]).status is JobStatus.QUEUED  # still backing off
    dispatcher.store.set_fields(job["id"], not_before=utcnow() - timedelta(seconds=1))
    dispatcher.tick()
    assert dispatcher.store.get(job["id"]).status is JobStatus.STARTING
    assert [r["ProcessingJobName"] for r in sent] == [job_name(job["id"], 1)]


def test_concurrency_cap(service) -> None:
    client, dispatcher, sent = service
    jobs = [submit(client, seed=i) for i in range(3)]
    dispatcher.tick()
    assert len(sent) == 2
    set_state(sent[0]["ProcessingJobName"], "Failed", failure_reason="x")
    set_state(sent[1]["ProcessingJobName"], "InProgress")
    dispatcher.tick()
    assert len(sent) == 3 and {r["Tags"][0]["Value"] for r in sent} == {j["id"] for j in jobs}


@pytest.mark.parametrize("reached", [True, False])
def test_retry_after_timeout_makes_exactly_one_job(service, reached: bool) -> None:
    """A timeout after (or before) the request reached SageMaker never leads to a second job."""
    client, dispatcher, _ = service
    boto = dispatcher.client.client
    timeouts = [1]

    def time_out(**_: Any) -> None:
        if timeouts:
            timeouts.pop()
            raise ReadTimeoutError(endpoint_url="http://sagemaker")

    event = "after-call.sagemaker.CreateProcessingJob" if reached else "before-call.sagemaker.CreateProcessingJob"
    boto.meta.events.register(event, time_out)
    job = submit(client)
    dispatcher.tick()
    name = job_name(job["id"], 1)
    assert dispatcher.store.get(job["id"]).status is JobStatus.STARTING
    assert (name in processing_jobs()) is reached
    if reached:
        set_state(name, "InProgress")  # moto would report Completed at once
    dispatcher.store.set_fields(job["id"], updated_at=utcnow() - timedelta(seconds=30))
    dispatcher.tick()  # resolves the uncertain submission: found (reached) or sent again (not reached)
    set_state(name, "InProgress")
    dispatcher.tick()
    ours = [n for n, j in processing_jobs().items() if any(t["Value"] == job["id"] for t in j.tags)]
    assert ours == [name]
    assert dispatcher.store.get(job["id"]).status in (JobStatus.STARTING, JobStatus.RUNNING)


# ---- EventBridge --------------------------------------------------------------------------------------


def _event(name: str, status: str, **detail: str) -> dict[str, Any]:
    return {
        "version": "0", "source": "aws.sagemaker", "detail-type": "SageMaker Processing Job State Change",
        "detail": {"ProcessingJobName": name, "ProcessingJobStatus": status, **detail},
    }  # fmt: skip


def test_eventbridge_duplicates_and_out_of_order(service, tmp_path: Path) -> None:
    client, dispatcher, sent = service
    headers = {"X-Worldgen-Events-Secret": "s3cret"}
    job = submit(client)
    dispatcher.tick()
    request = sent[-1]
    name = request["ProcessingJobName"]
    assert client.post("/v1/integrations/sagemaker/events", json=_event(name, "InProgress")).status_code == 401
    wrong = client.post("/v1/integrations/sagemaker/events", json=_event(name, "InProgress"),
                        headers={"X-Worldgen-Events-Secret": "nope"})  # fmt: skip
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    run_like_sagemaker(request, tmp_path / "ml")
    set_state(name, "Completed")
    post = lambda body: client.post("/v1/integrations/sagemaker/events", json=body, headers=headers)  # noqa: E731
    first = post(_event(name, "Completed"))  # arrives before InProgress
    assert first.status_code == 202 and first.json()["status"] == "succeeded"
    for late in (_event(name, "InProgress"), _event(name, "Completed"), _event(name, "Failed", FailureReason="x")):
        assert post(late).json() == {"applied": False, "job": job["id"], "status": "succeeded",
                                     "worlds": {job["id"]: "succeeded"}}  # fmt: skip
    assert post(_event("wg-unknown-1", "Completed")).json()["applied"] is False
    assert client.get(f"/v1/worlds/{job['id']}").json()["status"] == "succeeded"
    bad = post({"detail-type": "Something else", "detail": {}})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_eventbridge_failure_and_stop(service) -> None:
    client, dispatcher, sent = service
    headers = {"X-Worldgen-Events-Secret": "s3cret"}
    failing, stopped = submit(client, seed=1), submit(client, seed=2)
    dispatcher.tick()
    names = {r["Tags"][0]["Value"]: r["ProcessingJobName"] for r in sent}
    post = lambda body: client.post("/v1/integrations/sagemaker/events", json=body, headers=headers)  # noqa: E731
    set_state(names[failing["id"]], "InProgress")
    post(_event(names[failing["id"]], "InProgress"))
    set_state(names[failing["id"]], "Failed", failure_reason="AlgorithmError",
              exit_message="internal_error: CUDA out of memory")  # fmt: skip
    post(_event(names[failing["id"]], "Failed"))
    post(_event(names[failing["id"]], "InProgress"))  # a late duplicate changes nothing
    failed = client.get(f"/v1/worlds/{failing['id']}").json()
    assert failed["status"] == "failed" and failed["error"]["code"] == "internal_error"
    client.post(f"/v1/worlds/{stopped['id']}/cancel")
    set_state(names[stopped["id"]], "Stopping")
    post(_event(names[stopped["id"]], "Stopping"))
    set_state(names[stopped["id"]], "Stopped")
    post(_event(names[stopped["id"]], "Stopped"))
    assert client.get(f"/v1/worlds/{stopped['id']}").json()["status"] == "canceled"
