"""The SageMaker dispatcher: packs queued worlds into batches (up to WORLDGEN_SAGEMAKER_BATCH_SIZE
worlds, waiting at most WORLDGEN_SAGEMAKER_BATCH_WAIT_SECONDS for a batch to fill), submits one
processing job per batch under a cap on concurrent processing jobs, and syncs every world's status
by polling. AWS errors are handled by their class (`errors`): a world waits on quota, capacity or
throttling (with backoff, up to a deadline), fails at once on a permanent refusal, and one world's
error never holds up another or stops the poll. Never two processing jobs for one batch: names are
deterministic (the first world's attempt) and an uncertain submission is resolved by
DescribeProcessingJob before anything is sent again."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from worldgen.backends.sagemaker.client import SageMakerClient
from worldgen.backends.sagemaker.errors import AwsError, Kind
from worldgen.backends.sagemaker.spec import (
    MAX_INPUTS,
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
        """Submit batches while fewer than the cap's processing jobs run; returns the worlds sent."""
        submitted: list[str] = []
        while self.running_batches() < self.settings.sagemaker_max_concurrent_jobs:
            batch = self.next_batch()
            if not batch:
                break
            if self.submit_batch(batch):
                submitted += [job.id for job in batch]
        return submitted

    def running_batches(self) -> int:
        return len({job.backend_ref for job in self.store.active_jobs(BACKEND)})

    def next_batch(self) -> list[Job]:
        """Claim the next batch: the oldest due worlds, up to the batch size and to what one
        processing job's inputs allow; none while a short batch may still fill (the oldest world
        has waited less than the batch wait)."""
        size = self.settings.sagemaker_batch_size
        due = self.store.due_queued(BACKEND, size)
        if not due:
            return []
        waited = (utcnow() - min(job.updated_at for job in due)).total_seconds()
        if len(due) < size and waited < self.settings.sagemaker_batch_wait_seconds:
            return []
        chosen: list[Job] = []
        uploads = 0
        for job in due:
            needed = len(self._upload_ids(job))
            if chosen and 1 + uploads + needed > MAX_INPUTS:  # the request channel + uploads
                break
            chosen.append(job)
            uploads += needed
        batch: list[Job] = []
        for _ in chosen:
            claimed = self.store.claim("sagemaker-dispatcher", BACKEND)
            if claimed is None:
                break
            batch.append(claimed)
        return batch

    def submit(self, job: Job) -> bool:
        """A batch of one (kept for callers that re-send a single world)."""
        return self.submit_batch([job])

    def submit_batch(self, batch: list[Job]) -> bool:
        """Send CreateProcessingJob for the claimed worlds, named after the first world's attempt.
        False if it did not go out (the worlds wait in the queue, or failed)."""
        leader = batch[0]
        name = job_name(leader.id, leader.attempt)
        for job in batch:
            self.store.set_fields(job.id, backend_ref=name)
        prefixes: dict[str, str] = {}
        usable = []
        for job in batch:
            try:
                prefixes.update(self._upload_prefixes(job))
                usable.append(job)
            except WorldgenError as exc:
                lifecycle.finish_failed(self.store, job.id, exc.code, exc.message)
        if not usable:
            return False
        try:
            request = build_request(self.job_settings, leader.id, leader.attempt, prefixes, len(usable))
        except (InvalidProcessingJob, WorldgenError) as exc:
            for job in usable:
                lifecycle.finish_failed(self.store, job.id, exc.code, exc.message)
            return False
        try:
            self._write_requests(usable, name)
            self.client.create(request)
        except AwsError as error:
            return self._refused_batch(usable, error)
        except Exception as exc:  # S3 (the request files) or anything unforeseen: these worlds only
            log.exception("batch %s: submission failed", name)
            return self._refused_batch(usable, AwsError(Kind.RETRYABLE, type(exc).__name__, str(exc)))
        log.info("batch %s: submitted %d world(s): %s", name, len(usable), ", ".join(j.id for j in usable))
        return True

    def _refused_batch(self, batch: list[Job], error: AwsError) -> bool:
        results = [self._refused(job, error) for job in batch]
        return all(results)

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

    def _upload_ids(self, job: Job) -> list[str]:
        request = job.world_request
        return [*([SOURCE_WORLD_INPUT] if request.source_world_id else []), *request.upload_ids()]

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

    def _write_requests(self, batch: list[Job], name: str) -> None:
        """The batch's request channel: worlds.json (the order they run in) and one request per world."""
        import io
        import json

        prefix = keys.run_request_prefix(name)
        for job in batch:
            body = io.BytesIO(json.dumps(job.request, indent=2).encode())
            self.storage.put_stream(f"{prefix}{job.id}.json", body, "application/json")
        listing = io.BytesIO(json.dumps({"worlds": [job.id for job in batch]}).encode())
        self.storage.put_stream(f"{prefix}worlds.json", listing, "application/json")

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
            self.cancel(job, name)
        status = listed.get(name)
        if status is None:
            self._resolve_missing(job, name)
        elif status in ("Completed", "Failed", "Stopped"):
            self.apply_described(job, name)  # the list has no failure reason or exit message
        else:
            apply_status(
                self.store, self.storage, job, status, max_queue_seconds=self.settings.sagemaker_max_queue_seconds
            )

    def cancel(self, job: Job, name: str) -> None:
        """Mark the world cancelled for its batch's container (it stops at its next step, or
        never starts); when every unfinished world of the batch is cancelled, stop the job."""
        import io

        self.storage.put_stream(f"{keys.run_cancel_prefix(name)}{job.id}", io.BytesIO(b""), "text/plain")
        batch = [j for j in self.store.find_by_backend_ref(BACKEND, name) if not j.status.terminal]
        if all(j.status is JobStatus.CANCELING for j in batch):
            self.stop(job, name)

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
            batch = [j for j in self.store.find_by_backend_ref(BACKEND, name) if j.status is JobStatus.STARTING]
            leader = next((j for j in batch if job_name(j.id, j.attempt) == name), None)
            if leader is not None:  # the same batch, the same name: never a second processing job
                self.submit_batch([leader, *(j for j in batch if j is not leader)])
