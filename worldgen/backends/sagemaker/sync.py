"""Carrying SageMaker's view of a job into ours — one function for the poller and the EventBridge
endpoint alike, so either path alone keeps jobs right, and duplicates or out-of-order reports
change nothing once a job is final.

A processing job runs a batch of worlds (container/batch.py); each world's own progress.json,
manifest and message decide its outcome, and the processing job's status only what happens to
worlds that never finished: a world done before the batch ended is published even if a later
world crashed the container, and a world that never started goes back to the queue."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from worldgen.backends.sagemaker.errors import backoff, is_capacity_failure
from worldgen.container.contract import EXIT_OOM_KILLED, MESSAGE_FILE, exit_failure
from worldgen.jobs import lifecycle
from worldgen.jobs.artifacts import artifact_entry
from worldgen.jobs.state import JobStatus, Stage
from worldgen.jobs.store import Job, JobStore, utcnow
from worldgen.outputs import MANIFEST_FILE
from worldgen.progress import before_upload, uploading
from worldgen.storage import keys
from worldgen.storage.s3 import S3ArtifactStore

log = logging.getLogger("worldgen.sagemaker")


def output_key(job: Job, name: str) -> str:
    """Storage key (relative to the storage prefix) of a file the world's container wrote."""
    return keys.run_output_file(str(job.backend_ref), f"{job.id}/{name}")


def read_message(storage: S3ArtifactStore, job: Job) -> str | None:
    try:
        with storage.open(output_key(job, MESSAGE_FILE)) as stream:
            return stream.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None


def read_progress(storage: S3ArtifactStore, job: Job) -> dict[str, Any] | None:
    try:
        with storage.open(output_key(job, "progress.json")) as stream:
            report = json.loads(stream.read())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return report if isinstance(report, dict) else None


def publish_outputs(
    storage: S3ArtifactStore, job: Job, on_copy: Callable[[str, int, int], None] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Copy the files the manifest lists, and the manifest, to worlds/{id}/ (server-side copies);
    `on_copy(name, index, count)` before each."""
    with storage.open(output_key(job, MANIFEST_FILE)) as stream:
        raw = stream.read()
    manifest = json.loads(raw)
    entries = [artifact_entry(e["name"], e, manifest) for e in manifest["files"]]
    entries.append(
        {
            "name": MANIFEST_FILE,
            "size": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "content_type": "application/json",
        }
    )
    for index, entry in enumerate(entries):
        if on_copy is not None:
            on_copy(entry["name"], index, len(entries))
        storage.copy_from(
            output_key(job, entry["name"]),
            keys.world_file(job.id, entry["name"]),
            sha256=entry["sha256"],
            content_type=entry["content_type"],
        )
    return entries, manifest


def failure(exit_message: str | None, failure_reason: str | None, stage: str | None) -> tuple[str, str]:
    """(code, message) of a Failed processing job: the container's own message when it wrote one,
    else what SageMaker says (an OOM-killed container exits 137 and writes nothing)."""
    reason = failure_reason or ""
    oom = "137" in reason or "outofmemory" in reason.replace(" ", "").lower()
    if exit_message:
        code, message = exit_failure(1, exit_message, stage)
    elif oom:
        code, message = exit_failure(EXIT_OOM_KILLED, None, stage)
    else:
        code, message = "sagemaker_failed", reason or "the processing job failed without a reason"
    if reason and reason not in message:
        message = f"{message} ({reason})"
    return code, message


def apply_status(
    store: JobStore,
    storage: S3ArtifactStore,
    job: Job,
    status: str,
    *,
    failure_reason: str | None = None,
    exit_message: str | None = None,
    max_queue_seconds: float,
) -> Job:
    """Move `job` according to SageMaker's `status`; a final job is never changed again.

    A processing job that failed for want of capacity is not the world's failure: the world waits
    in the queue (with backoff) and is tried again, until it has waited `max_queue_seconds`."""
    job = store.get(job.id)
    if job.status.terminal:
        return job
    report = read_progress(storage, job) or {}
    ended = report.get("status")
    if ended in ("succeeded", "failed", "canceled"):
        return _world_ended(store, storage, job, ended, report)
    if status in ("InProgress", "Stopping"):
        job = lifecycle.mark_running(store, job.id)
        if report:
            job = store.record_progress(
                job.id,
                stage=report.get("stage"),
                progress=before_upload(float(report.get("progress") or 0)),
                message=report.get("message"),
                warnings=report.get("warnings") or [],
            )
        return job
    if job.status is JobStatus.CANCELING and status in ("Completed", "Failed", "Stopped"):
        return lifecycle.finish_canceled(store, job.id)
    if status == "Completed":  # the container went through every world, so each wrote its status
        return lifecycle.finish_failed(
            store, job.id, "missing_outputs", "the processing job completed without this world's final status"
        )
    if status == "Failed":
        if not exit_message and is_capacity_failure(failure_reason):
            reason = f"SageMaker: {failure_reason}"
            return wait_or_fail(store, job, "capacity_unavailable", reason, max_queue_seconds, new_attempt=True)
        if not report and not exit_message:
            reason = f"the batch's processing job failed before this world started ({failure_reason or 'no reason'})"
            return wait_or_fail(store, job, "batch_failed", reason, max_queue_seconds, new_attempt=True)
        code, message = failure(exit_message, failure_reason, report.get("stage") or job.stage)
        return lifecycle.finish_failed(store, job.id, code, message)
    if status == "Stopped":
        return lifecycle.finish_failed(
            store, job.id, "stopped", failure_reason or "the processing job was stopped outside worldgen"
        )
    log.warning("job %s: unknown SageMaker status %r", job.id, status)
    return job


def _world_ended(store: JobStore, storage: S3ArtifactStore, job: Job, ended: str, report: dict[str, Any]) -> Job:
    """The world's own final status, whatever the batch around it is doing."""
    if ended == "succeeded":
        if job.status is JobStatus.CANCELING:
            return lifecycle.finish_canceled(store, job.id)

        def on_copy(name: str, index: int, count: int) -> None:
            store.record_progress(job.id, stage=Stage.UPLOAD.value, progress=uploading(index, count),
                                  message=f"{name} ({index + 1}/{count})")  # fmt: skip

        try:
            artifacts, manifest = publish_outputs(storage, job, on_copy)
        except FileNotFoundError:  # uploads still under way (Continuous mode): the next poll
            return job
        return lifecycle.finish_succeeded(store, job.id, artifacts, manifest)
    if ended == "canceled":
        if job.status is JobStatus.CANCELING:
            return lifecycle.finish_canceled(store, job.id)
        return lifecycle.finish_failed(store, job.id, "stopped", "the world was stopped outside worldgen")
    code, message = exit_failure(1, read_message(storage, job), report.get("stage") or job.stage)
    return lifecycle.finish_failed(store, job.id, code, message)


def wait_or_fail(
    store: JobStore, job: Job, code: str, reason: str, max_queue_seconds: float, *, new_attempt: bool = False
) -> Job:
    """Back to the queue with backoff while the world has waited less than `max_queue_seconds`
    since it was created; after that it fails with `code`."""
    waited = utcnow() - job.created_at
    if waited.total_seconds() >= max_queue_seconds:
        return lifecycle.finish_failed(
            store, job.id, code, f"{reason} (still not possible after {waited.total_seconds() / 60:.0f} minutes)"
        )
    return lifecycle.wait_in_queue(store, job.id, reason, backoff(waited), new_attempt=new_attempt)
