"""A batch: several worlds in one container (one SageMaker processing job), models loaded once.

The worlds run one after another on one warm runtime. Each keeps its own request, progress,
outputs, manifest and failure message (`ContainerPaths.world`); one world's failure fails only
that world and the next one starts. A world is cancelled on its own through a marker object
`{WORLDGEN_CANCEL_URL}{world id}` in S3 (the dispatcher writes it; SageMaker has no other way
into a running container), polled every few seconds; SIGTERM (StopProcessingJob) stops them all.
The container exits 0 when every world was dealt with, whatever each one's outcome.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time

from worldgen.container.contract import EXIT_CANCELED, EXIT_OK, ContainerPaths
from worldgen.container.entrypoint import run, write_message
from worldgen.container.progress_file import ProgressFile
from worldgen.container.runtimes import RuntimePool, model_stream
from worldgen.progress import CancelToken

log = logging.getLogger("worldgen.container")

CANCEL_URL_ENV = "WORLDGEN_CANCEL_URL"
CANCEL_POLL_SECONDS = 5.0


def batch_worlds(paths: ContainerPaths) -> list[str]:
    data = json.loads(paths.batch_file.read_text())
    worlds = data.get("worlds") if isinstance(data, dict) else None
    if not isinstance(worlds, list) or not all(isinstance(w, str) and w for w in worlds):
        raise ValueError(f'{paths.batch_file} must be {{"worlds": [id, ...]}}')
    return worlds


class CancelWatcher:
    """Polls the batch's cancel prefix in S3 and cancels the worlds named there."""

    def __init__(self, url: str, tokens: dict[str, CancelToken], interval: float = CANCEL_POLL_SECONDS) -> None:
        import boto3

        from worldgen.storage.s3 import parse_s3_url

        self.bucket, self.prefix = parse_s3_url(url)
        self.tokens, self.interval = tokens, interval
        self.client = boto3.client("s3")
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="worldgen-cancel-watcher", daemon=True)

    def start(self) -> CancelWatcher:
        self.thread.start()
        return self

    def poll(self) -> list[str]:
        """Cancel every world with a marker; returns their ids."""
        named = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                world = item["Key"][len(self.prefix) :]
                if world in self.tokens:
                    self.tokens[world].cancel("canceled")
                    named.append(world)
        return named

    def _loop(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.poll()
            except Exception as exc:  # S3 unreachable for a moment: try again at the next poll
                log.warning("cancel markers could not be read: %s", exc)

    def stop(self) -> None:
        self.stopped.set()


def run_batch(paths: ContainerPaths, started: float) -> int:
    """`started`: when the process began (time.time()); its startup is shared among the worlds."""
    worlds = batch_worlds(paths)
    tokens = {world: CancelToken() for world in worlds}
    stopping = threading.Event()

    def on_sigterm(signum: int, frame: object) -> None:
        stopping.set()
        for token in tokens.values():
            token.cancel("stopped (SIGTERM)")

    signal.signal(signal.SIGTERM, on_sigterm)
    url = os.environ.get(CANCEL_URL_ENV)
    watcher = CancelWatcher(url, tokens).start() if url else None
    runtimes = RuntimePool(keep=True, stream=model_stream(paths, [paths.world(w).request_file for w in worlds]))
    startup_s = 0.0
    try:
        for index, world in enumerate(worlds):
            world_paths = paths.world(world)
            if watcher is not None:
                try:
                    watcher.poll()  # a world cancelled while it waited must not start
                except Exception as exc:
                    log.warning("cancel markers could not be read: %s", exc)
            token = tokens[world]
            if token.cancelled:
                write_message(world_paths, "canceled", f"job {token.reason}")
                ProgressFile(world_paths.progress_file).set(status="canceled")
                continue
            if index == 0:
                startup_s = max(0.0, time.time() - started)
            log.info("world %d/%d: %s", index + 1, len(worlds), world)
            run(world_paths, runtimes, token, startup_s=startup_s / len(worlds), batch_size=len(worlds))
    finally:
        if watcher is not None:
            watcher.stop()
        runtimes.close()
    return EXIT_CANCELED if stopping.is_set() else EXIT_OK
