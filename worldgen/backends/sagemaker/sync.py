"""Carrying SageMaker's view of a job into ours — one function for the poller and the EventBridge
endpoint alike, so either path alone keeps jobs right, and duplicates or out-of-order reports
change nothing once a job is final."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from worldgen.container.contract import MANIFEST_FILE, parse_message
from worldgen.jobs.state import JobStatus, Stage
from worldgen.jobs.store import Job, JobStore
from worldgen.storage.s3 import S3ArtifactStore

log = logging.getLogger("worldgen.sagemaker")


def output_key(job: Job, name: str) -> str:
    """Storage key (relative to the storage prefix) of a file the job's container wrote."""
    return f"runs/{job.backend_ref}/world/{name}"


def read_progress(storage: S3ArtifactStore, job: Job) -> dict[str, Any] | None:
    try:
        with storage.open(output_key(job, "progress.json")) as stream:
            return json.loads(stream.read())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def publish_outputs(storage: S3ArtifactStore, job: Job) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Copy the files the manifest lists, and the manifest, to worlds/{id}/ (server-side copies)."""
    with storage.open(output_key(job, MANIFEST_FILE)) as stream:
        raw = stream.read()
    manifest = json.loads(raw)
    entries = [{k: e[k] for k in ("name", "size", "sha256", "content_type")} for e in manifest["files"]]
    entries.append(
        {
            "name": MANIFEST_FILE,
            "size": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "content_type": "application/json",
        }
    )
    for entry in entries:
        storage.copy_from(
            output_key(job, entry["name"]),
            f"worlds/{job.id}/{entry['name']}",
            sha256=entry["sha256"],
            content_type=entry["content_type"],
        )
    return entries, manifest


def apply_status(
    store: JobStore,
    storage: S3ArtifactStore,
    job: Job,
    status: str,
    *,
    failure_reason: str | None = None,
    exit_message: str | None = None,
) -> Job:
    """Move `job` according to SageMaker's `status`; a final job is never changed again."""
    job = store.get(job.id)
    if job.status.terminal:
        return job
    if status in ("InProgress", "Stopping"):
        if job.status is JobStatus.STARTING:
            job = store.transition(job.id, JobStatus.RUNNING)
        report = read_progress(storage, job)
        if report is not None:
            job = store.record_progress(
                job.id,
                stage=report.get("stage"),
                progress=float(report.get("progress") or 0),
                message=report.get("message"),
                warnings=report.get("warnings") or [],
            )
        return job
    if status == "Completed":
        if job.status is JobStatus.CANCELING:
            return store.transition(job.id, JobStatus.CANCELED, error_code="canceled", error_message="canceled")
        if job.status is JobStatus.STARTING:
            job = store.transition(job.id, JobStatus.RUNNING)
        try:
            artifacts, manifest = publish_outputs(storage, job)
        except FileNotFoundError:
            return store.transition(
                job.id,
                JobStatus.FAILED,
                error_code="missing_outputs",
                error_message="the job completed without a manifest.json",
            )
        return store.transition(
            job.id,
            JobStatus.SUCCEEDED,
            progress=1.0,
            stage=Stage.UPLOAD.value,
            message="done",
            artifacts=artifacts,
            timings=manifest.get("timings_s", {}),
            warnings=list(dict.fromkeys([*job.warnings, *manifest.get("warnings", [])])),
        )
    if status == "Failed":
        code, message = parse_message(exit_message) if exit_message else ("sagemaker_failed", failure_reason or "")
        if failure_reason and failure_reason not in message:
            message = f"{message} ({failure_reason})" if message else failure_reason
        target = JobStatus.CANCELED if job.status is JobStatus.CANCELING else JobStatus.FAILED
        if job.status is JobStatus.STARTING and target is JobStatus.FAILED:
            job = store.transition(job.id, JobStatus.RUNNING)
        return store.transition(job.id, target, error_code=code, error_message=message[:4000])
    if status == "Stopped":
        if job.status is JobStatus.CANCELING:
            return store.transition(job.id, JobStatus.CANCELED, error_code="canceled", error_message="canceled")
        if job.status is JobStatus.STARTING:
            job = store.transition(job.id, JobStatus.RUNNING)
        return store.transition(
            job.id,
            JobStatus.FAILED,
            error_code="stopped",
            error_message=failure_reason or "the processing job was stopped outside worldgen",
        )
    log.warning("job %s: unknown SageMaker status %r", job.id, status)
    return job
