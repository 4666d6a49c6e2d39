"""The local worker with real subprocesses: success, cancel, crash recovery, retention, shutdown."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from worldgen.backends.local import LocalWorker, WorkerConfig, _pid_alive
from worldgen.jobs.state import JobStatus
from worldgen.jobs.store import Job, JobStore, utcnow
from worldgen.request import WorldRequest
from worldgen.storage.local import LocalArtifactStore

QUICK = {"height": 64, "steps": 2}
SLOW = {"height": 256, "steps": 200}


def wait_for(predicate: Callable[[], bool], timeout: float = 240, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


MODES = ["warm", "process"]


@pytest.fixture(params=MODES)
def env(request: pytest.FixtureRequest, tmp_path: Path, tiny_models: Path) -> Iterator[tuple]:
    """(store, storage, config, make): `make(config)` builds a worker whose warm processes end with the test."""
    store = JobStore.open(f"sqlite:///{tmp_path / 'jobs.db'}")
    storage = LocalArtifactStore(tmp_path / "artifacts")
    config = WorkerConfig(
        work_dir=tmp_path / "work", models_dir=tiny_models, poll_interval=0.2, cancel_grace_seconds=20,
        mode=request.param,
    )  # fmt: skip
    workers: list[LocalWorker] = []

    def make(config: WorkerConfig = config) -> LocalWorker:
        workers.append(LocalWorker(store, storage, config))
        return workers[-1]

    yield store, storage, config, make
    for worker in workers:
        worker.close()
    store.close()


def submit(store: JobStore, **fields: object) -> Job:
    return store.create(WorldRequest(prompt="a lake", seed=3, **fields), backend="local")[0]


def running_worker(worker: LocalWorker) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


def test_runs_a_job_and_uploads_what_the_manifest_lists(env) -> None:
    store, storage, config, make = env
    job = submit(store, **QUICK)
    worker = make()
    assert worker.run_once() is True
    done = store.get(job.id)
    assert done.status is JobStatus.SUCCEEDED and done.progress == 1.0 and done.attempt == 1
    names = {a["name"] for a in done.artifacts}
    manifest = json.loads(storage.open(f"worlds/{job.id}/manifest.json").read())
    assert names == {f["name"] for f in manifest["files"]} | {"manifest.json"}
    assert {"panorama.png", "world.glb", "mesh_layer0.ply", "world_preview.glb"} <= names
    for entry in manifest["files"]:
        data = storage.open(f"worlds/{job.id}/{entry['name']}").read()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert done.timings["panorama"] > 0
    assert not (config.work_dir / f"{job.id}-1").exists()  # the temporary contract root is gone
    assert (config.work_dir / "logs" / f"{job.id}-1.log").is_file()
    assert worker.run_once() is False


def test_failures_carry_the_container_message(env) -> None:
    store, _storage, config, make = env
    job = store.create(WorldRequest(prompt="a lake", seed=3, image_upload_id="gone", **QUICK), backend="local")[
        0
    ]  # an upload that does not exist
    make().run_once()
    failed = store.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.error_code == "invalid_request"
    assert "upload 'gone'" in failed.error_message
    missing = WorkerConfig(work_dir=config.work_dir, models_dir=config.work_dir / "none", mode=config.mode)
    job = submit(store, **QUICK)
    make(missing).run_once()
    assert store.get(job.id).error_code == "model_missing"


def test_cancel_ends_the_subprocess(env) -> None:
    store, _storage, config, make = env
    job = submit(store, **SLOW)
    stop, thread = running_worker(make())
    try:
        wait_for(lambda: (store.get(job.id).message or "").startswith("step"), what="denoising to start")
        pid = int(store.get(job.id).backend_ref.rsplit(":", 1)[1])
        assert _pid_alive(pid)
        asked = time.monotonic()
        assert store.request_cancel(job.id).status is JobStatus.CANCELING
        wait_for(lambda: store.get(job.id).status is JobStatus.CANCELED, timeout=60, what="canceled")
        assert time.monotonic() - asked < config.cancel_grace_seconds  # SIGTERM sufficed
        assert store.get(job.id).artifacts == []
        if config.mode == "process":
            wait_for(lambda: not _pid_alive(pid), timeout=10, what="the process to exit")
        else:  # the warm process stopped the world, not itself: the next world runs on it
            assert _pid_alive(pid)
            after = submit(store, **QUICK)
            wait_for(lambda: store.get(after.id).status.terminal, timeout=120, what="the next world")
            assert store.get(after.id).status is JobStatus.SUCCEEDED
            assert int(store.get(after.id).backend_ref.rsplit(":", 1)[1]) == pid
    finally:
        stop.set()
        thread.join(30)


def test_killed_worker_job_is_requeued_once_and_succeeds(tmp_path: Path, tiny_models: Path) -> None:
    """SIGKILL the worker mid-job; a restarted worker kills the orphan, re-queues the job once,
    and runs it to success."""
    env = {**os.environ, "WORLDGEN_DATA_DIR": str(tmp_path / "data"), "WORLDGEN_MODELS_DIR": str(tiny_models)}
    store = JobStore.open(f"sqlite:///{(tmp_path / 'data' / 'worldgen.db').resolve()}")
    # 200 steps: the panorama takes seconds on the tiny models, so the 0.5 s progress polls see it
    # (at 40 steps the whole denoising loop fit between two polls and CI missed it).
    job = submit(store, height=128, steps=200)
    command = [sys.executable, "-m", "worldgen", "worker"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: store.get(job.id).stage == "panorama", what="the first attempt to run")
        orphan = int(store.get(job.id).backend_ref.rsplit(":", 1)[1])
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert store.get(job.id).status is JobStatus.RUNNING  # nobody knows yet
        second = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: store.get(job.id).status.terminal, timeout=300, what="the retry to finish")
            final = store.get(job.id)
            assert final.status is JobStatus.SUCCEEDED, final
            assert final.attempt == 2 and any("attempt 1 lost" in w for w in final.warnings)
            assert not _pid_alive(orphan)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(60)
    finally:
        if first.poll() is None:
            first.kill()
        store.close()


def test_lost_job_without_attempts_left_fails(env) -> None:
    store, _storage, _config, make = env
    job = store.create(WorldRequest(prompt="a", seed=1), backend="local", max_attempts=1)[0]
    store.claim("elsewhere:1:x", "local")
    store.transition(job.id, JobStatus.RUNNING)
    store.set_fields(job.id, heartbeat_at=utcnow() - timedelta(hours=1))
    assert make().recover_lost_jobs() == [job.id]
    lost = store.get(job.id)
    assert lost.status is JobStatus.FAILED and lost.error_code == "worker_lost"


def test_shutdown_requeues_without_spending_an_attempt(env) -> None:
    store, _storage, _config, make = env
    job = submit(store, **SLOW)
    stop, thread = running_worker(make())
    wait_for(lambda: (store.get(job.id).message or "").startswith("step"), what="denoising to start")
    stop.set()
    thread.join(60)
    back = store.get(job.id)
    assert back.status is JobStatus.QUEUED and back.attempt == 0


def test_retention_removes_old_artifacts(env) -> None:
    store, storage, config, make = env
    job = submit(store, **QUICK)
    make().run_once()
    assert storage.list(f"worlds/{job.id}/")
    keeping = make(WorkerConfig(**{**config.__dict__, "retention_days": 1}))
    assert keeping.remove_expired_artifacts() == 0
    store.set_fields(job.id, finished_at=utcnow() - timedelta(days=2))
    assert keeping.remove_expired_artifacts() == 1
    assert storage.list(f"worlds/{job.id}/") == [] and store.get(job.id).artifacts_removed


def test_cancel_while_starting_still_stops_the_process(env) -> None:
    """A cancel between claim and process start: the process is started, watched and stopped,
    and the world ends canceled (it used to fail with IllegalTransition, the process left running)."""
    store, _storage, config, make = env
    job = submit(store, **SLOW)
    worker = make()
    claimed = store.claim(worker.worker_id, "local")
    assert claimed is not None and claimed.status is JobStatus.STARTING
    store.request_cancel(job.id)
    worker._execute(claimed, threading.Event())
    ended = store.get(job.id)
    assert ended.status is JobStatus.CANCELED and ended.error_code == "canceled"
    pid = int((ended.backend_ref or "").rpartition(":")[2])
    assert _pid_alive(pid) is (config.mode == "warm")  # a warm process outlives the world it stopped


def test_a_sigkilled_container_is_out_of_memory_naming_its_stage(env) -> None:
    store, _storage, _config, make = env
    job = submit(store, **SLOW)
    stop, thread = running_worker(make())
    try:
        wait_for(lambda: store.get(job.id).stage == "panorama", what="the panorama stage")
        pid = int((store.get(job.id).backend_ref or "").rpartition(":")[2])
        os.kill(pid, signal.SIGKILL)  # what the kernel's OOM killer does
        wait_for(lambda: store.get(job.id).status.terminal, what="the job to end")
    finally:
        stop.set()
        thread.join(timeout=60)
    failed = store.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.error_code == "out_of_memory"
    assert "during panorama" in (failed.error_message or "")
