"""The SageMaker dispatcher: submits queued jobs under a concurrency cap and syncs their status by
polling. AWS errors are handled by their class (`errors`): a world waits on quota, capacity or
throttling (with backoff, up to a deadline), fails at once on a permanent refusal, and one world's
error never holds up another or stops the poll. Never two processing jobs for one attempt: names
are deterministic per attempt and an uncertain submission is resolved by DescribeProcessingJob
before anything is sent again."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from worldgen.backends.sagemaker.client import SageMakerClient
from worldgen.backends.sagemaker.errors import AwsError, Kind
from worldgen.backends.sagemaker.spec import (
    InvalidProcessingJob,
    JobSettings,
    build_request,
    job_name,
    raw_models_gb,
    volume_size_gb,
)
from worldgen.backends.sagemaker.sync import apply_status, wait_or_fail
from worldgen.config import Settings
from worldgen.errors import WorldgenError
from worldgen.jobs import lifecycle
from worldgen.jobs.state import JobStatus
from worldgen.jobs.store import Job, JobStore, utcnow
from worldgen.pipeline_inputs import SOURCE_WORLD_INPUT
from worldgen.storage import keys
from worldgen.storage.s3 import S3ArtifactStore, parse_s3_url

log = logging.getLogger("worldgen.sagemaker")

BACKEND = "sagemaker"


def job_settings(settings: Settings, storage: S3ArtifactStore, models_gb: float | None = None) -> JobSettings:
    missing = [
        name
        for name, value in (
            ("WORLDGEN_SAGEMAKER_ROLE_ARN", settings.sagemaker_role_arn),
            ("WORLDGEN_SAGEMAKER_IMAGE_URI", settings.sagemaker_image_uri),
            ("WORLDGEN_MODELS_URL", settings.models_url),
        )
        if not value
    ]
    if missing:
        raise WorldgenError(f"the sagemaker backend needs {', '.join(missing)}", code="configuration")
    assert settings.sagemaker_role_arn and settings.sagemaker_image_uri and settings.models_url
    parse_s3_url(settings.models_url)
    price = settings.sagemaker_price_table.get(settings.sagemaker_instance_type)
    environment = {"WORLDGEN_INSTANCE_TYPE": settings.sagemaker_instance_type, "HF_HUB_OFFLINE": "1"}
    if price is not None:
        environment["WORLDGEN_PRICE_PER_HOUR"] = f"{price:g}"
    return JobSettings(
        role_arn=settings.sagemaker_role_arn,
        image_uri=settings.sagemaker_image_uri,
        instance_type=settings.sagemaker_instance_type,
        max_runtime_seconds=settings.sagemaker_max_runtime_seconds,
        volume_gb=settings.sagemaker_volume_gb
        or volume_size_gb(models_gb if models_gb is not None else raw_models_gb()),
        models_url=settings.models_url,
        storage_bucket=storage.bucket,
        storage_prefix=storage.prefix,
        environment=environment,
    )


class SageMakerDispatcher:
    def __init__(
        self, store: JobStore, storage: S3ArtifactStore, settings: Settings, client: SageMakerClient | None = None
    ) -> None:
        self.store = store
        self.storage = storage
        self.settings = settings
        self.client = client or SageMakerClient()
        from worldgen.models.mirror import models_gb

        recorded = models_gb(settings.models_url, storage.client) if settings.models_url else None
        self.job_settings = job_settings(settings, storage, recorded)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("sagemaker dispatcher tick failed; continuing")
            stop.wait(self.settings.sagemaker_poll_seconds)

    def tick(self) -> None:
        """One round: sync every active job, then submit queued ones up to the cap."""
        self.sync()
        self.dispatch()

    # ---- submitting ---------------------------------------------------------------------------

    def dispatch(self) -> list[str]:
        submitted = []
        while len(self.store.active_jobs(BACKEND)) < self.settings.sagemaker_max_concurrent_jobs:
            job = self.store.claim("sagemaker-dispatcher", BACKEND)
            if job is None:
                break
            if self.submit(job):
                submitted.append(job.id)
        return submitted

    def submit(self, job: Job) -> bool:
        """Send CreateProcessingJob for the claimed job's attempt. False if it did not go out
        (the world waits in the queue, or failed)."""
        name = job_name(job.id, job.attempt)
        self.store.set_fields(job.id, backend_ref=name)
        try:
            request = build_request(self.job_settings, job.id, job.attempt, self._upload_prefixes(job))
        except (InvalidProcessingJob, WorldgenError) as exc:
            lifecycle.finish_failed(self.store, job.id, exc.code, exc.message)
            return False
        try:
            self._write_request(job, name)
            self.client.create(request)
        except AwsError as error:
            return self._refused(job, error)
        except Exception as exc:  # S3 (the request file) or anything unforeseen: this world only
            log.exception("job %s: submission failed", job.id)
            return self._refused(job, AwsError(Kind.RETRYABLE, type(exc).__name__, str(exc)))
        log.info("job %s: submitted %s", job.id, name)
        return True

    def _refused(self, job: Job, error: AwsError) -> bool:
        """What a refused CreateProcessingJob does to the world (see `errors` for the classes)."""
        limit = self.settings.sagemaker_max_queue_seconds
        if error.kind is Kind.UNCERTAIN:
            log.warning("job %s: submission uncertain (%s); resolved on the next sync", job.id, error)
            return True
        if error.kind is Kind.QUOTA and error.zero_limit:
            lifecycle.finish_failed(self.store, job.id, "quota_exceeded", f"SageMaker quota: {error}")
        elif error.kind is Kind.QUOTA:
            wait_or_fail(self.store, job, "quota_exceeded", f"SageMaker quota: {error}", limit)
        elif error.kind is Kind.RETRYABLE:
            wait_or_fail(self.store, job, "sagemaker_unavailable", f"SageMaker: {error}", limit)
        else:
            lifecycle.finish_failed(self.store, job.id, "sagemaker_rejected", f"SageMaker refused the job: {error}")
        log.info("job %s: CreateProcessingJob refused (%s, %s)", job.id, error.kind.value, error)
        return False

    def _upload_prefixes(self, job: Job) -> dict[str, str]:
        prefixes = {}
        request = job.world_request
        if request.source_world_id:
            prefixes[SOURCE_WORLD_INPUT] = keys.world_file(request.source_world_id, keys.PANORAMA)
        for upload_id in request.upload_ids():
            upload = self.store.get_upload(upload_id)
            if upload is None:
                raise WorldgenError(f"upload {upload_id!r} no longer exists", code="invalid_request")
            prefixes[upload_id] = keys.upload_prefix(upload_id)
        return prefixes

    def _write_request(self, job: Job, name: str) -> None:
        import io
        import json

        body = io.BytesIO(json.dumps(job.request, indent=2).encode())
        self.storage.put_stream(f"{keys.run_request_prefix(name)}request.json", body, "application/json")

    # ---- syncing ------------------------------------------------------------------------------

    def sync(self) -> None:
        """Carry SageMaker's status into every active world; an error with one world (or with the
        listing) is logged and tried again on the next poll, never raised."""
        active = self.store.active_jobs(BACKEND)
        if not active:
            return
        try:
            listed = self.client.list_statuses(min(j.created_at for j in active) - timedelta(hours=1))
        except AwsError as error:
            log.warning("ListProcessingJobs failed (%s, %s); status sync skipped this poll", error.kind.value, error)
            return
        for job in active:
            try:
                self._sync_one(job, listed)
            except AwsError as error:
                log.warning("job %s: %s (%s); tried again on the next poll", job.id, error, error.kind.value)
            except Exception:
                log.exception("job %s: status sync failed; tried again on the next poll", job.id)

    def _sync_one(self, job: Job, listed: dict[str, str]) -> None:
        name = job.backend_ref or job_name(job.id, job.attempt)
        if job.status is JobStatus.CANCELING:
            self.stop(job, name)
        status = listed.get(name)
        if status is None:
            self._resolve_missing(job, name)
        elif status in ("Completed", "Failed", "Stopped"):
            self.apply_described(job, name)  # the list has no failure reason or exit message
        else:
            apply_status(
                self.store, self.storage, job, status, max_queue_seconds=self.settings.sagemaker_max_queue_seconds
            )

    def stop(self, job: Job, name: str) -> None:
        """StopProcessingJob; a refusal leaves the world canceling (it ends when the job does) and
        says why in its warnings."""
        try:
            self.client.stop(name)
        except AwsError as error:
            if error.kind is Kind.PERMANENT:
                note = f"could not stop processing job {name}: {error}"
                self.store.set_fields(job.id, warnings=lifecycle.merge_warnings(job.warnings, [note]))
            log.warning("job %s: StopProcessingJob failed (%s, %s)", job.id, error.kind.value, error)

    def apply_described(self, job: Job, name: str) -> bool:
        """Describe the processing job and apply its status; False if SageMaker has no such job."""
        described = self.client.describe(name)
        if described is None:
            return False
        apply_status(
            self.store,
            self.storage,
            job,
            described.status,
            failure_reason=described.failure_reason,
            exit_message=described.exit_message,
            max_queue_seconds=self.settings.sagemaker_max_queue_seconds,
        )
        return True

    def _resolve_missing(self, job: Job, name: str) -> None:
        """A job we think we submitted but SageMaker does not list: look it up by name; if it
        really does not exist, send the same request again (same name, so never a duplicate)."""
        if self.apply_described(job, name):
            return
        if job.status is JobStatus.CANCELING:
            lifecycle.finish_canceled(self.store, job.id)
            return
        if job.status is JobStatus.STARTING and (utcnow() - job.updated_at).total_seconds() > 5:
            self.submit(job)
