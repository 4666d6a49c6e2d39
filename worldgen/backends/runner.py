"""Start the configured backend's background loop (used by `worldgen serve` and `worldgen worker`)."""

from __future__ import annotations

import threading

from worldgen.config import Settings
from worldgen.errors import WorldgenError
from worldgen.jobs.store import JobStore
from worldgen.storage.base import ArtifactStore


def build_local_worker(settings: Settings, store: JobStore, storage: ArtifactStore):
    from worldgen.backends.local import LocalWorker, WorkerConfig

    config = WorkerConfig(
        work_dir=settings.work_dir,
        models_dir=settings.resolved_models_dir,
        concurrency=settings.worker_concurrency,
        cancel_grace_seconds=settings.cancel_grace_seconds,
        lost_after_seconds=settings.lost_after_seconds,
        retention_days=settings.retention_days,
        device=settings.device,
        mode=settings.worker_mode,
    )
    return LocalWorker(store, storage, config)


def build_backend(settings: Settings, store: JobStore, storage: ArtifactStore):
    """The configured backend's loop object (it has `run(stop)`)."""
    if settings.backend == "local":
        return build_local_worker(settings, store, storage)
    if settings.backend == "sagemaker":
        from worldgen.backends.sagemaker.dispatcher import SageMakerDispatcher
        from worldgen.storage.s3 import S3ArtifactStore

        if not isinstance(storage, S3ArtifactStore):
            raise WorldgenError(
                "the sagemaker backend needs WORLDGEN_STORAGE_URL=s3://bucket/prefix", code="configuration"
            )
        return SageMakerDispatcher(store, storage, settings)
    raise WorldgenError(f"unknown backend {settings.backend!r} (local | sagemaker)", code="configuration")


def start_backend(
    settings: Settings, store: JobStore, storage: ArtifactStore, stop: threading.Event
) -> threading.Thread:
    backend = build_backend(settings, store, storage)
    thread = threading.Thread(target=backend.run, args=(stop,), name="worldgen-backend", daemon=True)
    thread.start()
    return thread
