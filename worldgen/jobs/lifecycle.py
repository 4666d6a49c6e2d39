"""How a job moves and ends, in one place: the backends only carry reports (a process exited, a
SageMaker job completed, a cancel was asked) here, and this module decides the transition.

Each function reads the job's current status and does the right thing for every state: a final
job is never changed again (late or duplicate reports are harmless), a job whose cancel was
requested ends canceled whatever its work reports, and error messages are cut to one length.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from worldgen.jobs.state import IllegalTransition, JobStatus, Stage
from worldgen.jobs.store import Job, JobStore, canceled_message

ERROR_MESSAGE_LIMIT = 4000
CANCELED_CODE = "canceled"


def merge_warnings(*groups: Iterable[str]) -> list[str]:
    """All warnings once each, in order of first appearance."""
    return list(dict.fromkeys(w for group in groups for w in group))


def mark_running(store: JobStore, job_id: str) -> Job:
    """Work has started: starting → running. A job cancelled meanwhile stays canceling (its work
    is still to be stopped and watched); any other state is left as it is."""
    job = store.get(job_id)
    if job.status is not JobStatus.STARTING:
        return job
    try:
        return store.transition(job_id, JobStatus.RUNNING, expect=[JobStatus.STARTING])
    except IllegalTransition:
        return store.get(job_id)  # a cancel won the race


def cancel(store: JobStore, job_id: str) -> Job:
    """The client asked to cancel: queued → canceled at once; starting/running → canceling (the
    backend stops the work, then `finish_canceled`); canceling/canceled: unchanged. Succeeded or
    failed jobs raise IllegalTransition."""
    return store.request_cancel(job_id)


def finish_canceled(store: JobStore, job_id: str, message: str | None = None) -> Job:
    """The work stopped after a cancel (or never started): canceling → canceled, with `message`
    (default: where it stopped, `canceled_message`)."""
    job = store.get(job_id)
    if job.status.terminal:
        return job
    if job.status is JobStatus.QUEUED:
        return store.request_cancel(job_id)
    if job.status is not JobStatus.CANCELING:
        job = store.request_cancel(job_id)
    return store.transition(
        job_id, JobStatus.CANCELED, error_code=CANCELED_CODE, error_message=message or canceled_message(job)
    )


def finish_failed(store: JobStore, job_id: str, code: str, message: str) -> Job:
    """The work failed (or could not start). A job whose cancel was requested ends canceled."""
    job = store.get(job_id)
    if job.status.terminal:
        return job
    if job.status is JobStatus.CANCELING:
        return finish_canceled(store, job_id)
    return store.transition(job_id, JobStatus.FAILED, error_code=code, error_message=message[:ERROR_MESSAGE_LIMIT])


def finish_succeeded(store: JobStore, job_id: str, artifacts: list[dict[str, Any]], manifest: Mapping[str, Any]) -> Job:
    """The work finished and its files are in storage under worlds/{id}/."""
    job = store.get(job_id)
    if job.status.terminal:
        return job
    if job.status is JobStatus.CANCELING:
        return finish_canceled(store, job_id)
    job = mark_running(store, job_id)
    return store.transition(
        job_id,
        JobStatus.SUCCEEDED,
        progress=1.0,
        stage=Stage.UPLOAD.value,
        message="done",
        artifacts=artifacts,
        timings=dict(manifest.get("timings_s", {})),
        cost=manifest.get("cost"),
        warnings=merge_warnings(job.warnings, manifest.get("warnings", [])),
    )


def retry_or_fail(
    store: JobStore,
    job_id: str,
    code: str,
    message: str,
    *,
    delay: timedelta | None = None,
    refund: bool = False,
) -> Job:
    """The attempt was lost (worker gone, capacity, throttling): back to the queue while attempts
    remain (`refund`: this attempt does not count), else failed with `code`. Canceling → canceled."""
    job = store.get(job_id)
    if job.status is JobStatus.CANCELING:
        return finish_canceled(store, job_id)
    return store.requeue_or_fail(job_id, code=code, message=message[:ERROR_MESSAGE_LIMIT], delay=delay, refund=refund)


def wait_in_queue(store: JobStore, job_id: str, reason: str, delay: timedelta, *, new_attempt: bool = False) -> Job:
    """Not the world's failure (quota, capacity, throttling): back to the queue for `delay`
    without using up an attempt; the message says what it waits for. `new_attempt`: the work
    had started under this attempt's name (e.g. a processing job that found no capacity), so the
    next try runs as the next attempt, under a new name, and still costs no attempt."""
    job = store.get(job_id)
    if job.status is JobStatus.CANCELING:
        return finish_canceled(store, job_id)
    if job.status.terminal:
        return job
    if new_attempt:
        store.set_fields(job_id, max_attempts=job.max_attempts + 1)
    store.requeue_or_fail(job_id, code="waiting", message=reason, delay=delay, refund=not new_attempt, warn=False)
    return store.set_fields(job_id, message=f"waiting: {reason}"[:ERROR_MESSAGE_LIMIT])
