"""`worldgen container serve --inbox DIR`: one long-lived process that runs worlds one after
another on one warm runtime (the local worker's warm mode).

The protocol is files, like the container contract itself:

    {inbox}/{name}.json   a ticket {"root": ...}: run the world whose contract root that is
    {root}/cancel         written by the worker: stop this world at the next step boundary
    {root}/exit           written here when the world ended: its exit status, as `container run`'s

Each world gets exactly what `container run` gives it (request, progress.json, manifest,
message, status); only the process and its models outlive it. SIGTERM cancels the world
running and ends the process; so does the parent going away.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path

from worldgen.container.contract import EXIT_FAILED, ContainerPaths
from worldgen.container.cost import process_age_seconds
from worldgen.container.entrypoint import run
from worldgen.container.runtimes import RuntimePool
from worldgen.progress import CancelToken

log = logging.getLogger("worldgen.container")

CANCEL_FILE = "cancel"
EXIT_FILE = "exit"
WORLD_LOG = "container.log"
"""The world's own log lines, under its root (the worker appends them to the job's log)."""
POLL_SECONDS = 0.1


class FileCancelToken(CancelToken):
    """Cancelled when `path` exists (checked at every step boundary) or when `cancel()` is called."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def check(self) -> None:
        if self.path.exists():
            self.cancel("canceled")
        super().check()


def write_exit(root: Path, status: int) -> None:
    temporary = root / f".{EXIT_FILE}.tmp"
    temporary.write_text(str(status))
    temporary.replace(root / EXIT_FILE)


def read_exit(root: Path) -> int | None:
    try:
        return int((root / EXIT_FILE).read_text())
    except (OSError, ValueError):
        return None


def next_ticket(inbox: Path) -> Path | None:
    tickets = sorted(inbox.glob("*.json"))
    return tickets[0] if tickets else None


def serve(inbox: Path) -> int:
    inbox.mkdir(parents=True, exist_ok=True)
    parent = os.getppid()
    stopping = {"asked": False}
    current: dict[str, CancelToken | None] = {"token": None}

    def on_sigterm(signum: int, frame: object) -> None:
        stopping["asked"] = True
        if (token := current["token"]) is not None:
            token.cancel("stopped (SIGTERM)")

    signal.signal(signal.SIGTERM, on_sigterm)
    runtimes = RuntimePool(keep=True)
    worlds = 0
    try:
        while not stopping["asked"] and os.getppid() == parent:
            ticket = next_ticket(inbox)
            if ticket is None:
                time.sleep(POLL_SECONDS)
                continue
            try:
                root = Path(json.loads(ticket.read_text())["root"])
            except (OSError, ValueError, KeyError, TypeError):
                log.error("unreadable ticket %s: skipped", ticket.name)
                ticket.unlink(missing_ok=True)
                continue
            ticket.unlink(missing_ok=True)
            token = FileCancelToken(root / CANCEL_FILE)
            current["token"] = token
            handler = logging.FileHandler(root / WORLD_LOG)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logging.getLogger().addHandler(handler)
            try:
                startup = process_age_seconds() if worlds == 0 else 0.0  # later worlds start warm
                status = run(ContainerPaths(root), runtimes, token, startup_s=startup)
            except Exception:  # run() reports its own failures; this is a bug in serving itself
                log.exception("world under %s: serving failed", root)
                status = EXIT_FAILED
            finally:
                logging.getLogger().removeHandler(handler)
                handler.close()
            current["token"] = None
            worlds += 1
            write_exit(root, status)
            log.info("world %d under %s: exit %d", worlds, root, status)
    finally:
        runtimes.close()
    return 0
