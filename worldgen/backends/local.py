"""The local worker: claims queued jobs and runs each one under a temporary contract root in a
subprocess, so a crash in model code never takes the worker or the server down, and the code
path is the one the Docker image runs. In `warm` mode (the default) one long-lived `worldgen
container serve` per slot runs the worlds one after another with models kept loaded; in
`process` mode every world is a fresh `worldgen container run` (backends/processes.py).

It streams progress.json into the store, uploads the outputs to artifact storage, honours
cancellation (SIGTERM, then SIGKILL after a grace period), and on start re-queues (or fails with
`worker_lost`) jobs that a dead worker left behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from worldgen.backends.processes import ProcessRun, WarmServer, WorldRun, container_command
from worldgen.container.contract import ROOT_ENV, ContainerPaths, exit_failure
from worldgen.container.serve import WORLD_LOG
from worldgen.jobs import lifecycle
from worldgen.jobs.artifacts import artifact_entry
from worldgen.jobs.state import JobStatus, Stage
from worldgen.jobs.store import Job, JobNotFound, JobStore, utcnow
from worldgen.outputs import MANIFEST_FILE, read_json, write_json_atomic
from worldgen.pipeline_inputs import SOURCE_WORLD_INPUT
from worldgen.progress import before_upload, uploading
from worldgen.storage import keys
from worldgen.storage.base import ArtifactStore

log = logging.getLogger("worldgen.worker")

BACKEND = "local"


@dataclass(frozen=True)
class WorkerConfig:
    work_dir: Path
    models_dir: Path
    concurrency: int = 1
    poll_interval: float = 0.5
    cancel_grace_seconds: float = 30.0
    lost_after_seconds: float = 120.0
    retention_days: float | None = None
    device: str | None = None
    mode: str = "warm"
    """warm: one long-lived process per slot keeps models loaded; process: a process per world."""


__all__ = ["BACKEND", "LocalWorker", "WorkerConfig", "container_command"]


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalWorker:
    def __init__(self, store: JobStore, storage: ArtifactStore, config: WorkerConfig) -> None:
        self.store = store
        self.storage = storage
        self.config = config
        self.worker_id = make_worker_id()
        self.host = socket.gethostname()
        self.servers: dict[int, WarmServer] = {}
        """Warm mode: slot → its long-lived container process."""

    # ---- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Claim and run jobs until `stop` is set, `concurrency` at a time."""
        self.recover_lost_jobs()
        threads = [
            threading.Thread(target=self._slot, args=(stop, i), name=f"worldgen-worker-{i}", daemon=True)
            for i in range(self.config.concurrency)
        ]
        for thread in threads:
            thread.start()
        last_housekeeping = time.monotonic()
        while not stop.wait(self.config.poll_interval):
            if time.monotonic() - last_housekeeping > 30:
                last_housekeeping = time.monotonic()
                self.housekeeping()
        for thread in threads:
            thread.join()
        self.close()

    def close(self) -> None:
        """End the warm processes (a world still running in one is cancelled)."""
        for server in self.servers.values():
            server.close(self.config.cancel_grace_seconds)

    def _slot(self, stop: threading.Event, slot: int) -> None:
        while not stop.is_set():
            try:
                ran = self.run_once(stop, slot)
            except Exception:
                log.exception("worker slot failed; continuing")
                ran = False
            if not ran:
                stop.wait(self.config.poll_interval)

    def run_once(self, stop: threading.Event | None = None, slot: int = 0) -> bool:
        job = self.store.claim(self.worker_id, BACKEND)
        if job is None:
            return False
        log.info("job %s: claimed (attempt %d)", job.id, job.attempt)
        try:
            self._execute(job, stop or threading.Event(), slot)
        except Exception as exc:
            log.exception("job %s: worker error", job.id)
            self._finish_failed(job.id, "internal_error", f"worker error: {type(exc).__name__}: {exc}")
        return True

    def housekeeping(self) -> None:
        self.recover_lost_jobs()
        self.remove_expired_artifacts()
        self.remove_deleted_artifacts()

    # ---- one job ------------------------------------------------------------------------------

    def _execute(self, job: Job, stop: threading.Event, slot: int = 0) -> None:
        root = self.config.work_dir / f"{job.id}-{job.attempt}"
        paths = self._prepare(job, root)
        log_path = self.config.work_dir / "logs" / f"{job.id}-{job.attempt}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, ROOT_ENV: str(root)}
        if self.config.device:
            env["WORLDGEN_DEVICE"] = self.config.device
        run: WorldRun
        if self.config.mode == "warm":
            run = self._server(slot, env).submit(root, f"{job.id}-{job.attempt}")
        else:
            with log_path.open("ab") as log_file:
                run = ProcessRun(env, log_file)
        self.store.set_fields(job.id, backend_ref=f"{self.host}:{run.pid}")
        lifecycle.mark_running(self.store, job.id)  # a cancel meanwhile: still supervised, then stopped
        returncode = self._supervise(job.id, run, paths, stop)
        world_log = root / WORLD_LOG
        if world_log.is_file():  # warm mode: the world's own lines, apart from the process's
            with log_path.open("ab") as target:
                target.write(world_log.read_bytes())
        self._conclude(job.id, returncode, paths, stopping=stop.is_set())
        shutil.rmtree(root, ignore_errors=True)

    def _server(self, slot: int, env: dict[str, str]) -> WarmServer:
        if slot not in self.servers:
            inbox = self.config.work_dir / "warm" / f"{self.worker_id.replace(':', '-')}-{slot}"
            log_path = self.config.work_dir / "logs" / f"warm-slot{slot}.log"
            self.servers[slot] = WarmServer(inbox, {k: v for k, v in env.items() if k != ROOT_ENV}, log_path)
        return self.servers[slot]

    def _prepare(self, job: Job, root: Path) -> ContainerPaths:
        shutil.rmtree(root, ignore_errors=True)
        paths = ContainerPaths(root)
        write_json_atomic(paths.request_file, job.request)
        paths.models_dir.parent.mkdir(parents=True, exist_ok=True)
        paths.models_dir.symlink_to(self.config.models_dir.resolve(), target_is_directory=True)
        paths.uploads_dir.mkdir(parents=True, exist_ok=True)
        request = job.world_request
        if request.source_world_id:
            with (
                self.storage.open(keys.world_file(request.source_world_id, keys.PANORAMA)) as source,
                (paths.uploads_dir / SOURCE_WORLD_INPUT).open("wb") as target,
            ):
                shutil.copyfileobj(source, target)
        for upload_id in request.upload_ids():
            upload = self.store.get_upload(upload_id)
            if upload is None:
                continue  # the entrypoint reports the missing input as the job's error
            with self.storage.open(upload.storage_key) as source, (paths.uploads_dir / upload_id).open("wb") as target:
                shutil.copyfileobj(source, target)
        paths.output_dir.mkdir(parents=True, exist_ok=True)
        return paths

    def _supervise(self, job_id: str, run: WorldRun, paths: ContainerPaths, stop: threading.Event) -> int:
        """Mirror progress.json into the store until the process exits; stop it when asked."""
        term_sent_at: float | None = None
        last_report: dict | None = None
        while True:
            returncode = run.poll()
            report = read_json(paths.progress_file)
            if report is not None and report != last_report:
                last_report = report
                self.store.record_progress(
                    job_id, stage=report.get("stage"), progress=before_upload(float(report.get("progress") or 0.0)),
                    message=report.get("message"), warnings=report.get("warnings") or [],
                )  # fmt: skip
            else:
                self.store.heartbeat(job_id)
            if returncode is not None:
                return returncode
            job = self.store.get(job_id)
            wants_stop = job.status is JobStatus.CANCELING or job.deleted or stop.is_set()
            if wants_stop and term_sent_at is None:
                log.info("job %s: stopping it", job_id)
                run.stop()
                term_sent_at = time.monotonic()
            elif term_sent_at is not None and time.monotonic() - term_sent_at > self.config.cancel_grace_seconds:
                log.warning("job %s: did not stop within the grace period, killing its process", job_id)
                run.kill()
            time.sleep(self.config.poll_interval)

    def _conclude(self, job_id: str, returncode: int, paths: ContainerPaths, stopping: bool) -> None:
        job = self.store.get(job_id)
        if job.status is JobStatus.CANCELING:
            lifecycle.finish_canceled(self.store, job_id)
            return
        if returncode != 0 and stopping:
            # The worker is shutting down: the job goes back to the queue, and this attempt is not counted.
            lifecycle.retry_or_fail(self.store, job_id, "worker_stopped", "worker shut down", refund=True)
            return
        if returncode != 0:
            text = paths.message_file.read_text() if paths.message_file.is_file() else None
            report = read_json(paths.progress_file) or {}
            code, message = exit_failure(returncode, text, report.get("stage") or job.stage)
            lifecycle.finish_failed(self.store, job_id, code, message)
            return
        artifacts = self._upload(job_id, paths)
        manifest = json.loads(paths.manifest_file.read_text())
        lifecycle.finish_succeeded(self.store, job_id, artifacts, manifest)
        log.info("job %s: succeeded (%d artifacts)", job_id, len(artifacts))

    def _upload(self, job_id: str, paths: ContainerPaths) -> list[dict]:
        """The world's files (the manifest's list, then the manifest) into storage, with progress per file."""
        manifest = json.loads(paths.manifest_file.read_text())
        names = [entry["name"] for entry in manifest["files"]] + [MANIFEST_FILE]
        artifacts = []
        for index, name in enumerate(names):
            self.store.record_progress(job_id, stage=Stage.UPLOAD.value, progress=uploading(index, len(names)),
                                       message=f"{name} ({index + 1}/{len(names)})")  # fmt: skip
            info = self.storage.put_file(keys.world_file(job_id, name), paths.output_dir / name)
            artifacts.append(artifact_entry(name, info, manifest))
        return artifacts

    def _finish_failed(self, job_id: str, code: str, message: str) -> None:
        try:
            lifecycle.finish_failed(self.store, job_id, code, message)
        except JobNotFound:
            return

    # ---- recovery and housekeeping ------------------------------------------------------------

    def recover_lost_jobs(self) -> list[str]:
        """Jobs whose worker died: re-queue while attempts remain, else fail with worker_lost."""
        recovered = []
        now = utcnow()
        for job in self.store.active_jobs(BACKEND):
            if job.worker_id == self.worker_id:
                continue
            host, _, rest = (job.worker_id or "").partition(":")
            pid = int(rest.split(":")[0]) if rest.split(":")[0].isdigit() else None
            dead_here = host == self.host and pid is not None and not _pid_alive(pid)
            stale = (
                job.heartbeat_at is None or (now - job.heartbeat_at).total_seconds() > self.config.lost_after_seconds
            )
            if not (dead_here or stale):
                continue
            self._kill_orphan(job)
            lifecycle.retry_or_fail(self.store, job.id, "worker_lost", f"worker {job.worker_id} stopped responding")
            log.warning("job %s: worker %s lost; re-queued or failed", job.id, job.worker_id)
            recovered.append(job.id)
        return recovered

    def _kill_orphan(self, job: Job) -> None:
        """The dead worker's container process may still run: stop it so it frees the GPU."""
        host, _, pid = (job.backend_ref or "").partition(":")
        if host == self.host and pid.isdigit() and _pid_alive(int(pid)):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return
            if b"container" in cmdline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(pid), signal.SIGKILL)

    def remove_expired_artifacts(self) -> int:
        if not self.config.retention_days:
            return 0
        cutoff = utcnow() - timedelta(days=self.config.retention_days)
        removed = 0
        for job in self.store.expired_artifacts(cutoff):
            self.storage.delete_prefix(keys.world_prefix(job.id))
            self.store.set_fields(job.id, artifacts_removed=True)
            removed += 1
        return removed

    def remove_deleted_artifacts(self) -> int:
        removed = 0
        for job in self.store.expired_artifacts(utcnow()):
            if job.deleted:
                self.storage.delete_prefix(keys.world_prefix(job.id))
                self.store.set_fields(job.id, artifacts_removed=True)
                removed += 1
        return removed
