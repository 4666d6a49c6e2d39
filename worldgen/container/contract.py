"""Where a job's inputs and outputs live, following SageMaker Processing's conventions.

    {root}/processing/input/request/request.json   the WorldRequest (seed resolved)
    {root}/processing/input/models/                the models root (hub layout)
    {root}/processing/input/uploads/{upload_id}    files the request refers to
    {root}/processing/output/world/                results, progress.json, manifest.json
    {root}/output/message                          failure reason (first 1 KB), read by SageMaker

`root` is /opt/ml in the image; `WORLDGEN_CONTAINER_ROOT` (or `--root`) moves it, which is how
the local worker runs the very same entrypoint under a temporary directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path("/opt/ml")
ROOT_ENV = "WORLDGEN_CONTAINER_ROOT"
PROGRESS_FILE = "progress.json"
MANIFEST_FILE = "manifest.json"
MESSAGE_LIMIT = 1024

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_CANCELED = 143


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


def parse_message(text: str) -> tuple[str, str]:
    """'code: message' as written by the entrypoint → (code, message)."""
    code, sep, message = text.strip().partition(": ")
    if sep and code and code.replace("_", "").isalnum():
        return code, message
    return "internal_error", text.strip()
