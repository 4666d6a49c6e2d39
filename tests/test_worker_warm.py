"""The warm worker: worlds one after another on one long-lived process with models kept loaded;
a killed process ends only its world; memory stays flat across many worlds."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_worker import QUICK, SLOW, submit, wait_for
from worldgen.backends.local import LocalWorker, WorkerConfig, _pid_alive
from worldgen.jobs.state import JobStatus
from worldgen.jobs.store import JobStore
from worldgen.storage.local import LocalArtifactStore


@pytest.fixture
def warm(tmp_path: Path, tiny_models: Path) -> Iterator[tuple[JobStore, LocalArtifactStore, LocalWorker]]:
    store = JobStore.open(f"sqlite:///{tmp_path / 'jobs.db'}")
    storage = LocalArtifactStore(tmp_path / "artifacts")
    config = WorkerConfig(work_dir=tmp_path / "work", models_dir=tiny_models, poll_interval=0.1, mode="warm")
    worker = LocalWorker(store, storage, config)
    yield store, storage, worker
    worker.close()
    store.close()


def pid_of(store: JobStore, job_id: str) -> int:
    return int((store.get(job_id).backend_ref or "").rsplit(":", 1)[1])


def manifest_of(storage: LocalArtifactStore, job_id: str) -> dict:
    return json.loads(storage.open(f"worlds/{job_id}/manifest.json").read())


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_models_stay_loaded_between_worlds(warm) -> None:
    store, storage, worker = warm
    first, second = submit(store, **QUICK), submit(store, **QUICK)
    assert worker.run_once() and worker.run_once()
    assert store.get(first.id).status is JobStatus.SUCCEEDED and store.get(second.id).status is JobStatus.SUCCEEDED
    assert pid_of(store, first.id) == pid_of(store, second.id)
    loaded = manifest_of(storage, first.id)["model_loads"]
    assert loaded and manifest_of(storage, second.id)["model_loads"] == {}
    assert set(manifest_of(storage, second.id)["model_reuses"]) == set(loaded)
    log = (worker.config.work_dir / "logs" / f"{second.id}-1.log").read_text()
    assert "request loaded" in log and "done in" in log  # the world's own lines


def test_a_killed_warm_process_fails_its_world_and_the_next_starts_a_new_one(warm) -> None:
    store, _storage, worker = warm
    victim = submit(store, **SLOW)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: store.get(victim.id).stage == "panorama", what="the panorama stage")
        pid = pid_of(store, victim.id)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: store.get(victim.id).status.terminal, what="the killed world to end")
        failed = store.get(victim.id)
        assert failed.status is JobStatus.FAILED and failed.error_code == "out_of_memory"
        after = submit(store, **QUICK)
        wait_for(lambda: store.get(after.id).status.terminal, what="the next world")
        assert store.get(after.id).status is JobStatus.SUCCEEDED
        assert pid_of(store, after.id) != pid and worker.servers[0].started == 2
    finally:
        stop.set()
        thread.join(60)
    assert not _pid_alive(pid_of(store, after.id))  # the worker's shutdown ended its warm process


def test_memory_stays_flat_across_twenty_worlds(warm) -> None:
    """RSS of the warm process after world 5 and after world 20: parked models are loaded once,
    and nothing a world leaves behind accumulates."""
    store, _, worker = warm
    jobs = [submit(store, **QUICK) for _ in range(20)]
    samples = {}
    for index, job in enumerate(jobs, start=1):
        assert worker.run_once()
        assert store.get(job.id).status is JobStatus.SUCCEEDED, store.get(job.id)
        if index in (5, 20):
            samples[index] = rss_kib(pid_of(store, job.id))
    assert len({pid_of(store, job.id) for job in jobs}) == 1
    growth_mib = (samples[20] - samples[5]) / 1024
    assert growth_mib < 40, f"warm process grew {growth_mib:.0f} MiB from world 5 to 20 ({samples})"
