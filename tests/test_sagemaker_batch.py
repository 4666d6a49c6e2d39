"""Batched SageMaker jobs against moto's servers over HTTP and the real container entrypoint: several
worlds in one processing job on one set of loads, each with its own outputs, failure and cancel."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.aws import processing_jobs, record_requests, run_like_sagemaker, set_state
from tests.test_sagemaker import BUCKET, aws, models_url, settings, submit  # noqa: F401  (fixtures)
from worldgen.api.app import create_app
from worldgen.backends.sagemaker.client import SageMakerClient
from worldgen.backends.sagemaker.dispatcher import SageMakerDispatcher
from worldgen.backends.sagemaker.spec import job_name
from worldgen.config import Settings
from worldgen.jobs.state import JobStatus
from worldgen.storage import keys


@pytest.fixture
def batched(settings: Settings) -> Iterator[tuple[TestClient, SageMakerDispatcher, list[dict[str, Any]]]]:  # noqa: F811
    settings = settings.model_copy(update={"sagemaker_batch_size": 4, "sagemaker_batch_wait_seconds": 1.0,
                                           "sagemaker_price_table": {"ml.g5.2xlarge": 1.5}})  # fmt: skip
    with TestClient(create_app(settings, run_worker=False)) as client:
        state = client.app.state.worldgen
        boto = boto3.client("sagemaker")
        sent = record_requests(boto, "CreateProcessingJob")
        yield client, SageMakerDispatcher(state.store, state.storage, settings, SageMakerClient(boto)), sent


def world(client: TestClient, job: dict[str, Any]) -> dict[str, Any]:
    return client.get(f"/v1/worlds/{job['id']}").json()


def manifest(client: TestClient, job: dict[str, Any]) -> dict[str, Any]:
    artifacts = client.get(f"/v1/worlds/{job['id']}/artifacts").json()["items"]
    url = next(a["url"] for a in artifacts if a["name"] == "manifest.json")
    import httpx

    return httpx.get(client.get(url, follow_redirects=False).headers["location"]).json()


def test_a_short_batch_waits_then_goes_and_a_full_one_goes_at_once(batched) -> None:
    client, dispatcher, sent = batched
    first = [submit(client, seed=i) for i in range(2)]
    dispatcher.tick()
    assert sent == []  # two of four: the batch may still fill
    time.sleep(1.1)
    dispatcher.tick()
    assert len(sent) == 1 and sent[0]["Environment"]["WORLDGEN_BATCH_SIZE"] == "2"
    set_state(sent[0]["ProcessingJobName"], "InProgress")  # moto would mark it Completed at once
    full = [submit(client, seed=10 + i) for i in range(5)]
    dispatcher.tick()  # four are due at once: sent without waiting; the fifth waits
    assert len(sent) == 2 and sent[1]["Environment"]["WORLDGEN_BATCH_SIZE"] == "4"
    names = {dispatcher.store.get(j["id"]).backend_ref for j in full[:4]}
    assert names == {job_name(full[0]["id"], 1)}  # the batch is named after its first world's attempt
    assert dispatcher.store.get(full[4]["id"]).status is JobStatus.QUEUED
    set_state(sent[1]["ProcessingJobName"], "InProgress")
    time.sleep(1.1)
    dispatcher.tick()  # the cap (2 processing jobs) is reached: the fifth keeps waiting
    assert dispatcher.running_batches() == 2
    assert {dispatcher.store.get(j["id"]).status for j in first} == {JobStatus.RUNNING}
    assert len(sent) == 2


def test_worlds_of_a_batch_run_on_one_set_of_loads_each_with_its_own_outcome(batched, tmp_path: Path) -> None:
    """Three worlds in one processing job, through the real container entrypoint: the first and
    the third succeed (the third loads no model), the second fails alone (its upload vanished),
    and each world's cost carries a third of the container's startup."""
    client, dispatcher, sent = batched
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)).save(png, format="PNG")
    upload = client.post("/v1/uploads", files={"file": ("photo.png", png.getvalue())}).json()
    jobs = [submit(client, seed=1), submit(client, seed=2, image_upload_id=upload["id"]), submit(client, seed=3)]
    time.sleep(1.1)
    dispatcher.tick()
    (request,) = sent
    name = request["ProcessingJobName"]
    listing = json.loads(dispatcher.storage.open(f"{keys.run_request_prefix(name)}worlds.json").read())
    assert listing == {"worlds": [j["id"] for j in jobs]}
    assert any(i["InputName"].startswith("upload-") for i in request["ProcessingInputs"])
    dispatcher.storage.delete_prefix(keys.upload_prefix(upload["id"]))  # the second world's input is gone
    set_state(name, "InProgress")
    result = run_like_sagemaker(request, tmp_path / "ml")
    assert result.returncode == 0, result.stdout + result.stderr
    dispatcher.tick()
    first, second, third = (world(client, j) for j in jobs)
    assert first["status"] == "succeeded" and third["status"] == "succeeded", (first, third)
    assert second["status"] == "failed" and second["error"]["code"] == "invalid_request"
    assert upload["id"] in second["error"]["message"]
    manifests = [manifest(client, jobs[0]), manifest(client, jobs[2])]
    assert manifests[0]["model_loads"] and manifests[1]["model_loads"] == {}  # loaded once for the batch
    costs = [m["cost"] for m in manifests]
    assert [c["batch_size"] for c in costs] == [3, 3] and costs[0]["startup_s"] == costs[1]["startup_s"] > 0
    assert costs[0]["usd_per_hour"] == 1.5 and costs[0]["instance_type"] == "ml.g5.2xlarge"
    expected = 1.5 * (costs[0]["startup_s"] + manifests[0]["timings_s"]["total"]) / 3600
    assert abs(costs[0]["usd"] - expected) < 1e-5
    assert costs[1]["loads_s"] == 0 and costs[0]["loads_s"] > 0
    shown = world(client, jobs[2])["cost"]  # the API shows what the manifest says
    assert shown["usd"] == costs[1]["usd"] and shown["batch_size"] == 3
    set_state(name, "Completed")
    dispatcher.tick()
    assert [world(client, j)["status"] for j in jobs] == ["succeeded", "failed", "succeeded"]


def test_cancelling_one_world_leaves_the_batch_running(batched, tmp_path: Path) -> None:
    client, dispatcher, sent = batched
    keep, drop = submit(client, seed=1), submit(client, seed=2)
    time.sleep(1.1)
    dispatcher.tick()
    (request,) = sent
    name = request["ProcessingJobName"]
    set_state(name, "InProgress")
    dispatcher.tick()
    assert client.post(f"/v1/worlds/{drop['id']}/cancel").json()["status"] == "canceling"
    dispatcher.tick()  # a marker for the container, no StopProcessingJob: the other world goes on
    assert processing_jobs()[name].processing_job_status == "InProgress"
    assert dispatcher.storage.list(f"{keys.run_cancel_prefix(name)}{drop['id']}")
    result = run_like_sagemaker(request, tmp_path / "ml")
    assert result.returncode == 0, result.stdout + result.stderr
    dispatcher.tick()
    assert world(client, keep)["status"] == "succeeded"
    assert world(client, drop)["status"] == "canceled"
    assert not (tmp_path / f"ml/processing/output/world/{drop['id']}/manifest.json").exists()  # never started


def test_cancelling_every_world_stops_the_processing_job(batched) -> None:
    client, dispatcher, sent = batched
    jobs = [submit(client, seed=i) for i in range(2)]
    time.sleep(1.1)
    dispatcher.tick()
    name = sent[0]["ProcessingJobName"]
    set_state(name, "InProgress")
    client.post(f"/v1/worlds/{jobs[0]['id']}/cancel")
    dispatcher.tick()
    assert processing_jobs()[name].processing_job_status == "InProgress"
    client.post(f"/v1/worlds/{jobs[1]['id']}/cancel")
    dispatcher.tick()
    assert processing_jobs()[name].processing_job_status == "Stopped"
    dispatcher.tick()
    assert [world(client, j)["status"] for j in jobs] == ["canceled", "canceled"]


def test_a_crashed_batch_keeps_what_finished_fails_the_world_it_killed_and_requeues_the_rest(
    batched, tmp_path: Path
) -> None:
    client, dispatcher, sent = batched
    jobs = [submit(client, seed=i) for i in range(3)]
    time.sleep(1.1)
    dispatcher.tick()
    (request,) = sent
    name = request["ProcessingJobName"]
    set_state(name, "InProgress")
    result = run_like_sagemaker(request, tmp_path / "ml")
    assert result.returncode == 0, result.stdout + result.stderr
    # As if the container had been OOM-killed in the second world's depth stage: the second world's
    # last progress says so, the third never started.
    storage = dispatcher.storage
    report = {"status": "running", "stage": "depth", "progress": 0.7, "message": "view 3/12"}
    storage.put_stream(keys.run_output_file(name, f"{jobs[1]['id']}/progress.json"),
                       io.BytesIO(json.dumps(report).encode()), "application/json")  # fmt: skip
    storage.delete_prefix(keys.run_output_file(name, f"{jobs[2]['id']}/"))
    set_state(name, "Failed", failure_reason="AlgorithmError: ExitCode 137: the process was killed")
    dispatcher.tick()
    first, second, third = (dispatcher.store.get(j["id"]) for j in jobs)
    assert first.status is JobStatus.SUCCEEDED
    assert second.status is JobStatus.FAILED and second.error_code == "out_of_memory"
    assert "during depth" in (second.error_message or "")
    assert third.status is JobStatus.QUEUED and "before this world started" in (third.message or "")
