"""Every way a job moves or ends (worldgen/jobs/lifecycle.py), from every state, on SQLite and
PostgreSQL: what is allowed, what is refused, and that a final job never changes again."""

from __future__ import annotations

from datetime import timedelta

import pytest

from worldgen.jobs import lifecycle
from worldgen.jobs.state import IllegalTransition, JobStatus
from worldgen.jobs.store import JobStore
from worldgen.request import WorldRequest

ALL = list(JobStatus)


def job_in(store: JobStore, status: JobStatus) -> str:
    """A job driven to `status` through the store's own transitions."""
    job, _ = store.create(WorldRequest(prompt="a lake", seed=1), backend="local")
    if status is JobStatus.QUEUED:
        return job.id
    if status is JobStatus.CANCELED:
        store.request_cancel(job.id)
        return job.id
    claimed = store.claim("worker", "local")
    assert claimed is not None and claimed.id == job.id
    if status is JobStatus.STARTING:
        return job.id
    if status is JobStatus.FAILED:
        store.transition(job.id, JobStatus.FAILED, error_code="x", error_message="y")
        return job.id
    store.transition(job.id, JobStatus.RUNNING)
    if status is JobStatus.CANCELING:
        store.request_cancel(job.id)
    elif status is JobStatus.SUCCEEDED:
        store.transition(job.id, JobStatus.SUCCEEDED)
    return job.id


CANCEL = {
    JobStatus.QUEUED: JobStatus.CANCELED,
    JobStatus.STARTING: JobStatus.CANCELING,
    JobStatus.RUNNING: JobStatus.CANCELING,
    JobStatus.CANCELING: JobStatus.CANCELING,
    JobStatus.CANCELED: JobStatus.CANCELED,
    JobStatus.SUCCEEDED: None,
    JobStatus.FAILED: None,
}


@pytest.mark.parametrize("status", ALL)
def test_cancel_from_every_state(store: JobStore, status: JobStatus) -> None:
    job_id = job_in(store, status)
    expected = CANCEL[status]
    if expected is None:
        with pytest.raises(IllegalTransition):
            lifecycle.cancel(store, job_id)
        assert store.get(job_id).status is status
    else:
        assert lifecycle.cancel(store, job_id).status is expected


@pytest.mark.parametrize("status", ALL)
def test_mark_running_from_every_state(store: JobStore, status: JobStatus) -> None:
    job_id = job_in(store, status)
    expected = JobStatus.RUNNING if status is JobStatus.STARTING else status
    assert lifecycle.mark_running(store, job_id).status is expected


def test_cancel_while_starting_then_work_starts(store: JobStore) -> None:
    """The local worker's race: cancel lands between claim and process start; the job stays
    canceling (so the worker still stops and watches the process), then ends canceled."""
    job_id = job_in(store, JobStatus.STARTING)
    lifecycle.cancel(store, job_id)
    assert lifecycle.mark_running(store, job_id).status is JobStatus.CANCELING
    assert lifecycle.finish_canceled(store, job_id).status is JobStatus.CANCELED


FAILED_FROM = {
    JobStatus.QUEUED: JobStatus.FAILED,
    JobStatus.STARTING: JobStatus.FAILED,
    JobStatus.RUNNING: JobStatus.FAILED,
    JobStatus.CANCELING: JobStatus.CANCELED,
    JobStatus.CANCELED: JobStatus.CANCELED,
    JobStatus.SUCCEEDED: JobStatus.SUCCEEDED,
    JobStatus.FAILED: JobStatus.FAILED,
}


@pytest.mark.parametrize("status", ALL)
def test_finish_failed_from_every_state(store: JobStore, status: JobStatus) -> None:
    job_id = job_in(store, status)
    before = store.get(job_id)
    after = lifecycle.finish_failed(store, job_id, "boom", "x" * 5000)
    assert after.status is FAILED_FROM[status]
    if status.terminal:
        assert after.version == before.version  # a final job never changes again
    elif after.status is JobStatus.FAILED:
        assert after.error_code == "boom" and len(after.error_message or "") == lifecycle.ERROR_MESSAGE_LIMIT
    else:
        assert after.error_code == "canceled"


SUCCEEDED_FROM = {
    JobStatus.STARTING: JobStatus.SUCCEEDED,
    JobStatus.RUNNING: JobStatus.SUCCEEDED,
    JobStatus.CANCELING: JobStatus.CANCELED,
    JobStatus.CANCELED: JobStatus.CANCELED,
    JobStatus.SUCCEEDED: JobStatus.SUCCEEDED,
    JobStatus.FAILED: JobStatus.FAILED,
}


@pytest.mark.parametrize("status", list(SUCCEEDED_FROM))
def test_finish_succeeded_from_every_active_or_final_state(store: JobStore, status: JobStatus) -> None:
    job_id = job_in(store, status)
    store.set_fields(job_id, warnings=["kept"])
    artifacts = [{"name": "world.glb", "size": 1, "sha256": "0" * 64, "content_type": "model/gltf-binary"}]
    after = lifecycle.finish_succeeded(store, job_id, artifacts, {"timings_s": {"total": 2.0}, "warnings": ["new"]})
    assert after.status is SUCCEEDED_FROM[status]
    if after.status is JobStatus.SUCCEEDED and not status.terminal:
        assert after.artifacts == artifacts and after.timings == {"total": 2.0}
        assert after.warnings == ["kept", "new"] and after.progress == 1.0


def test_finish_succeeded_refuses_a_queued_job(store: JobStore) -> None:
    with pytest.raises(IllegalTransition):
        lifecycle.finish_succeeded(store, job_in(store, JobStatus.QUEUED), [], {})


@pytest.mark.parametrize("status", [JobStatus.STARTING, JobStatus.RUNNING])
def test_wait_in_queue_costs_no_attempt(store: JobStore, status: JobStatus) -> None:
    job_id = job_in(store, status)
    before = store.get(job_id)
    waiting = lifecycle.wait_in_queue(store, job_id, "SageMaker quota: limit is 2", timedelta(seconds=60))
    assert waiting.status is JobStatus.QUEUED and waiting.attempt == before.attempt - 1
    assert waiting.message == "waiting: SageMaker quota: limit is 2" and waiting.not_before is not None
    assert waiting.warnings == before.warnings


def test_wait_in_queue_as_a_new_attempt(store: JobStore) -> None:
    job_id = job_in(store, JobStatus.RUNNING)
    before = store.get(job_id)
    waiting = lifecycle.wait_in_queue(store, job_id, "no capacity", timedelta(seconds=1), new_attempt=True)
    assert waiting.status is JobStatus.QUEUED and waiting.attempt == before.attempt
    assert waiting.max_attempts == before.max_attempts + 1  # the next attempt is not a lost one


def test_wait_or_retry_of_a_canceling_job_ends_canceled(store: JobStore) -> None:
    one, two = job_in(store, JobStatus.CANCELING), job_in(store, JobStatus.CANCELING)
    assert lifecycle.wait_in_queue(store, one, "quota", timedelta(seconds=1)).status is JobStatus.CANCELED
    assert lifecycle.retry_or_fail(store, two, "worker_lost", "gone").status is JobStatus.CANCELED


def test_retry_or_fail_uses_attempts(store: JobStore) -> None:
    job_id = job_in(store, JobStatus.RUNNING)
    assert lifecycle.retry_or_fail(store, job_id, "worker_lost", "gone").status is JobStatus.QUEUED
    store.claim("worker", "local")
    store.transition(job_id, JobStatus.RUNNING)
    failed = lifecycle.retry_or_fail(store, job_id, "worker_lost", "gone again")
    assert failed.status is JobStatus.FAILED and failed.error_code == "worker_lost"


def test_a_canceled_world_says_where_it_stopped(store: JobStore) -> None:
    """Not "canceled: canceled": the stage (and how far) it stopped in, or that it never started."""
    running = job_in(store, JobStatus.RUNNING)
    store.record_progress(running, stage="layers", progress=0.634, message="sky: step 2/4")
    lifecycle.cancel(store, running)
    ended = lifecycle.finish_canceled(store, running)
    assert (ended.error_code, ended.error_message) == ("canceled", "canceled by request during layers (63 %)")
    starting = job_in(store, JobStatus.STARTING)
    lifecycle.cancel(store, starting)
    assert lifecycle.finish_canceled(store, starting).error_message == "canceled before it started"
    queued = job_in(store, JobStatus.QUEUED)
    assert lifecycle.cancel(store, queued).error_message == "canceled before it started"
    lost = job_in(store, JobStatus.RUNNING)  # its worker is lost while it is being canceled
    store.record_progress(lost, stage="depth", progress=0.8, message=None)
    lifecycle.cancel(store, lost)
    ended = store.requeue_or_fail(lost, code="worker_lost", message="gone")
    assert (ended.status, ended.error_code, ended.error_message) == (
        JobStatus.CANCELED, "canceled", "canceled by request during depth (80 %)"
    )  # fmt: skip
    explicit = job_in(store, JobStatus.CANCELING)
    assert lifecycle.finish_canceled(store, explicit, "stopped by the operator").error_message == (
        "stopped by the operator"
    )
