"""How the local worker runs a world's container: a process per world, or one warm process.

Both give the worker the same handle (`WorldRun`): its exit status once it ended, a polite stop
and a kill. `process` mode starts `worldgen container run` for each world; `warm` mode hands
worlds to one long-lived `worldgen container serve` per worker slot, which keeps models loaded
between worlds. A warm process that crashes or is killed ends only the world it was running (its
status is the process's); the next world starts a new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Protocol

from worldgen.container.serve import CANCEL_FILE, read_exit

WORKER_MODES = ("warm", "process")


def worldgen_command(*args: str) -> list[str]:
    """`worldgen ARGS` from this interpreter's environment (the image's entrypoint script)."""
    script = Path(sys.executable).parent / "worldgen"
    prefix = [str(script)] if script.exists() else [sys.executable, "-m", "worldgen"]
    return [*prefix, *args]


def container_command() -> list[str]:
    """The image's ENTRYPOINT (`worldgen container run`)."""
    return worldgen_command("container", "run")


class WorldRun(Protocol):
    pid: int

    def poll(self) -> int | None:
        """The world's exit status once it ended, else None."""

    def stop(self) -> None:
        """Ask the world to stop at its next step boundary."""

    def kill(self) -> None:
        """Stop it now (SIGKILL), whatever it is doing."""


def signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class ProcessRun:
    """`worldgen container run` in its own process group, for one world."""

    def __init__(self, env: dict[str, str], log_file: IO[bytes]) -> None:
        self.process = subprocess.Popen(
            container_command(), env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.pid = self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def stop(self) -> None:
        signal_group(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        signal_group(self.pid, signal.SIGKILL)


class WarmServer:
    """One `worldgen container serve` process (started when first needed, restarted after it
    died) and its inbox of tickets."""

    def __init__(self, inbox: Path, env: dict[str, str], log_path: Path) -> None:
        self.inbox, self.env, self.log_path = inbox, env, log_path
        self.process: subprocess.Popen | None = None
        self.started = 0
        """Processes started so far (1 while nothing crashed)."""

    def submit(self, root: Path, name: str) -> WarmRun:
        if self.process is None or self.process.poll() is not None:
            self._start()
        assert self.process is not None
        self.inbox.mkdir(parents=True, exist_ok=True)
        temporary = self.inbox / f".{name}.tmp"
        temporary.write_text(json.dumps({"root": str(root)}))
        temporary.replace(self.inbox / f"{name}.json")
        return WarmRun(self, self.process, root)

    def _start(self) -> None:
        for stale in self.inbox.glob("*.json"):  # worlds handed to a process that died: not re-run here
            stale.unlink(missing_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                worldgen_command("container", "serve", "--inbox", str(self.inbox)),
                env=self.env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.started += 1

    def close(self, timeout: float = 30.0) -> None:
        """End the process (SIGTERM: it cancels any world running, then exits)."""
        if self.process is None or self.process.poll() is not None:
            return
        signal_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


class WarmRun:
    """One world handed to a warm process."""

    def __init__(self, server: WarmServer, process: subprocess.Popen, root: Path) -> None:
        self.server, self.process, self.root = server, process, root
        self.pid = process.pid

    def poll(self) -> int | None:
        status = read_exit(self.root)
        if status is not None:
            return status
        died = self.process.poll()
        if died is not None:
            return read_exit(self.root) if read_exit(self.root) is not None else died
        return None

    def stop(self) -> None:
        (self.root / CANCEL_FILE).touch()

    def kill(self) -> None:
        signal_group(self.pid, signal.SIGKILL)
