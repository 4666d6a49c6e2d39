"""Start the configured backend's background loop (used by `worldgen serve` and `worldgen worker`)."""

from __future__ import annotations

import threading

from worldgen.config import Settings
from worldgen.jobs.store import JobStore
from worldgen.storage.base import ArtifactStore


def build_local_worker(settings: Settings, store: JobStore, storage: ArtifactStore):  # type: ignore[no-untyped-def]
    from worldgen.backends.local import LocalWorker, WorkerConfig

    config = WorkerConfig(
        work_dir=settings.work_dir,
        models_dir=settings.resolved_models_dir,
        concurrency=settings.worker_concurrency,
        cancel_grace_seconds=settings.cancel_grace_seconds,
        lost_after_seconds=settings.lost_after_seconds,
        retention_days=settings.retention_days,
        device=settings.device,
    )
    return LocalWorker(store, storage, config)


def start_backend(
    settings: Settings, store: JobStore, storage: ArtifactStore, stop: threading.Event
) -> threading.Thread:
    if settings.backend != "local":
        raise ValueError(f"unknown backend {settings.backend!r}")
    worker = build_local_worker(settings, store, storage)
    thread = threading.Thread(target=worker.run, args=(stop,), name="worldgen-backend", daemon=True)
    thread.start()
    return thread
