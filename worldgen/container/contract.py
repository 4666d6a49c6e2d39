"""Where a job's inputs and outputs live, following SageMaker Processing's conventions.

    {root}/processing/input/request/request.json   the WorldRequest (seed resolved)
    {root}/processing/input/models/                the models root (hub layout)
    {root}/processing/input/uploads/{upload_id}    files the request refers to
    {root}/processing/output/world/                results, progress.json, manifest.json
    {root}/output/message                          failure reason (first 1 KB), read by SageMaker

A batch (SageMaker runs several worlds in one processing job) has `worlds.json` = {"worlds":
[id, ...]} in the request channel instead of request.json, and per world:

    {root}/processing/input/request/{id}.json      its WorldRequest
    {root}/processing/output/world/{id}/           its results, progress.json, manifest.json, message

`root` is /opt/ml in the image; `WORLDGEN_CONTAINER_ROOT` (or `--root`) moves it, which is how
the local worker runs the very same entrypoint under a temporary directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from worldgen.outputs import MANIFEST_FILE, PROGRESS_FILE

DEFAULT_ROOT = Path("/opt/ml")
ROOT_ENV = "WORLDGEN_CONTAINER_ROOT"
MESSAGE_LIMIT = 1024
MESSAGE_FILE = "message"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_CANCELED = 143
EXIT_OOM_KILLED = 137
"""128 + SIGKILL: what Docker and SageMaker report for a container the kernel's OOM killer ended."""


@dataclass(frozen=True)
class ContainerPaths:
    root: Path

    @classmethod
    def resolve(cls, root: Path | None = None) -> ContainerPaths:
        if root is not None:
            return cls(Path(root))
        return cls(Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT))

    @property
    def request_file(self) -> Path:
        return self.root / "processing/input/request/request.json"

    @property
    def batch_file(self) -> Path:
        return self.root / "processing/input/request/worlds.json"

    def world(self, world_id: str) -> WorldPaths:
        """One world of a batch: its own request, outputs and failure message."""
        return WorldPaths(self.root, world_id)

    @property
    def models_dir(self) -> Path:
        return self.root / "processing/input/models"

    @property
    def uploads_dir(self) -> Path:
        return self.root / "processing/input/uploads"

    @property
    def output_dir(self) -> Path:
        return self.root / "processing/output/world"

    @property
    def progress_file(self) -> Path:
        return self.output_dir / PROGRESS_FILE

    @property
    def manifest_file(self) -> Path:
        return self.output_dir / MANIFEST_FILE

    @property
    def message_file(self) -> Path:
        return self.root / "output/message"


@dataclass(frozen=True)
class WorldPaths(ContainerPaths):
    world_id: str

    @property
    def request_file(self) -> Path:
        return self.root / f"processing/input/request/{self.world_id}.json"

    @property
    def output_dir(self) -> Path:
        return self.root / f"processing/output/world/{self.world_id}"

    @property
    def message_file(self) -> Path:
        return self.output_dir / MESSAGE_FILE


def parse_message(text: str) -> tuple[str, str]:
    """'code: message' as written by the entrypoint → (code, message)."""
    code, sep, message = text.strip().partition(": ")
    if sep and code and code.replace("_", "").isalnum():
        return code, message
    return "internal_error", text.strip()


def exit_failure(returncode: int, message: str | None, stage: str | None) -> tuple[str, str]:
    """(code, message) of a container that exited with `returncode` != 0.

    Its own 'code: message' wins. A container that wrote none was killed from outside before it
    could: SIGKILL (−9 from Popen, 137 from Docker/SageMaker) is what the OOM killer sends, so it
    is `out_of_memory`; any other signal is `killed`. Both name the stage it was in.
    """
    if message and message.strip():
        return parse_message(message)
    where = f" during {stage}" if stage else ""
    if returncode in (-9, EXIT_OOM_KILLED):
        return "out_of_memory", f"the job was killed (SIGKILL, exit 137){where}: most likely it ran out of memory"
    if returncode < 0 or returncode > 128:
        number = -returncode if returncode < 0 else returncode - 128
        return "killed", f"the job was killed by signal {number}{where}"
    return "internal_error", f"the job exited with status {returncode}{where} and no message"
