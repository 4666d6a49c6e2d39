"""progress.json: written atomically (temp file + rename) so readers never see half a file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from worldgen.outputs import write_json_atomic


class ProgressFile:
    """A progress sink that rewrites progress.json at most every `interval` seconds, and at
    once whenever the stage changes."""

    def __init__(self, path: Path, interval: float = 0.5) -> None:
        self.path = path
        self.interval = interval
        self._last_write = 0.0
        self._state: dict[str, Any] = {"status": "running", "stage": None, "progress": 0.0, "message": None,
                                       "warnings": []}  # fmt: skip

    def __call__(self, stage: str, progress: float, message: str | None) -> None:
        changed_stage = stage != self._state["stage"]
        self._state.update(stage=stage, progress=round(progress, 4), message=message)
        now = time.monotonic()
        if changed_stage or progress >= 1.0 or now - self._last_write >= self.interval:
            self.flush()

    def set(self, **values: Any) -> None:
        self._state.update(values)
        self.flush()

    def flush(self) -> None:
        self._last_write = time.monotonic()
        write_json_atomic(self.path, {**self._state, "updated_at": time.time()})
