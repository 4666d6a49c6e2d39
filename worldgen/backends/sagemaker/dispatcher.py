"""The SageMaker dispatcher: submits queued jobs under a concurrency cap, keeps them queued on
quota or throttling (with backoff), and syncs status by polling. Never two processing jobs for
one attempt: names are deterministic per attempt and an uncertain submission is resolved by
DescribeProcessingJob before anything is sent again."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from worldgen.backends.sagemaker.client import (
    TRANSIENT,
    QuotaExceeded,
    SageMakerClient,
    SubmissionUncertain,
)
from worldgen.backends.sagemaker.spec import (
    InvalidProcessingJob,
    JobSettings,
    build_request,
    job_name,
    raw_models_gb,
    run_prefix,
    volume_size_gb,
)
from worldgen.backends.sagemaker.sync import apply_status
from worldgen.config import Settings
from worldgen.errors import WorldgenError
from worldgen.jobs.state import JobStatus
from worldgen.jobs.store import Job, JobStore, utcnow
from worldgen.pipeline_inputs import SOURCE_WORLD_INPUT
from worldgen.storage.s3 import S3ArtifactStore, parse_s3_url

log = logging.getLogger("worldgen.sagemaker")

BACKEND = "sagemaker"
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(minutes=10)


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
        """Send CreateProcessingJob for the claimed job's attempt. False if it went back to the queue."""
        name = job_name(job.id, job.attempt)
        self.store.set_fields(job.id, backend_ref=name)
        try:
            request = build_request(self.job_settings, job.id, job.attempt, self._upload_prefixes(job))
        except (InvalidProcessingJob, WorldgenError) as exc:
            self.store.transition(job.id, JobStatus.FAILED, error_code=exc.code, error_message=exc.message)
            return False
        self._write_request(job, name)
        try:
            self.client.create(request)
        except QuotaExceeded as exc:
            self._back_off(job, str(exc))
            return False
        except SubmissionUncertain as exc:
            log.warning("job %s: submission of %s uncertain (%s); resolved on the next sync", job.id, name, exc)
            return True
        log.info("job %s: submitted %s", job.id, name)
        return True

    def _upload_prefixes(self, job: Job) -> dict[str, str]:
        prefixes = {}
        request = job.world_request
        if request.source_world_id:
            prefixes[SOURCE_WORLD_INPUT] = f"worlds/{request.source_world_id}/panorama.png"
        for upload_id in request.upload_ids():
            upload = self.store.get_upload(upload_id)
            if upload is None:
                raise WorldgenError(f"upload {upload_id!r} no longer exists", code="invalid_request")
            prefixes[upload_id] = upload.storage_key.rsplit("/", 1)[0] + "/"
        return prefixes

    def _write_request(self, job: Job, name: str) -> None:
        import io
        import json

        body = io.BytesIO(json.dumps(job.request, indent=2).encode())
        prefix = run_prefix(self.job_settings, name)[len(self.storage.prefix) :]
        self.storage.put_stream(f"{prefix}request/request.json", body, "application/json")

    def _back_off(self, job: Job, reason: str) -> None:
        hits = sum(1 for w in job.warnings if w.startswith("quota:")) + 1
        delay = min(BACKOFF_BASE * (2 ** (hits - 1)), BACKOFF_MAX)
        self.store.requeue_or_fail(job.id, code="quota", message=reason, delay=delay, refund=True)
        self.store.set_fields(job.id, warnings=[*self.store.get(job.id).warnings, f"quota: {reason}"])
        log.info("job %s: %s; back in the queue for %s", job.id, reason, delay)

    # ---- syncing ------------------------------------------------------------------------------

    def sync(self) -> None:
        active = self.store.active_jobs(BACKEND)
        if not active:
            return
        try:
            listed = self.client.list_statuses(min(j.created_at for j in active) - timedelta(hours=1))
        except (QuotaExceeded, *TRANSIENT):
            return
        for job in active:
            name = job.backend_ref or job_name(job.id, job.attempt)
            if job.status is JobStatus.CANCELING:
                self.client.stop(name)
            status = listed.get(name)
            if status is None:
                self._resolve_missing(job, name)
                continue
            if status in ("Completed", "Failed", "Stopped"):
                self._apply_described(job, name)  # the list has no failure reason or exit message
                continue
            apply_status(self.store, self.storage, job, status)

    def _apply_described(self, job: Job, name: str) -> bool:
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
        )
        return True

    def _resolve_missing(self, job: Job, name: str) -> None:
        """A job we think we submitted but SageMaker does not list: look it up by name; if it
        really does not exist, send the same request again (same name, so never a duplicate)."""
        if self._apply_described(job, name):
            return
        if job.status is JobStatus.CANCELING:
            self.store.transition(job.id, JobStatus.CANCELED, error_code="canceled", error_message="canceled")
            return
        if job.status is JobStatus.STARTING and (utcnow() - job.updated_at).total_seconds() > 5:
            self.submit(job)
