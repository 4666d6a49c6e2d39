"""Progress reporting and cooperative cancellation shared by every stage.

Stages call `progress.step(...)` between units of work; a cancel request (SIGTERM in the
container, DELETE/cancel in the API) makes the next check raise `Cancelled`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from worldgen.errors import Cancelled


class Stage(StrEnum):
    """The stages a job reports progress in (the job store and the API show them)."""

    LOADING_MODELS = "loading_models"
    PANORAMA = "panorama"
    LAYERS = "layers"
    DEPTH = "depth"
    MESH = "mesh"
    EXPORT = "export"
    UPLOAD = "upload"


ProgressSink = Callable[[str, float, str | None], None]
"""(stage, fraction 0..1 within the stage, optional message)."""


class CancelToken:
    """A thread-safe flag; `check()` raises `Cancelled` once it is set."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "canceled"

    def cancel(self, reason: str = "canceled") -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled(f"job {self.reason}")


def _ignore(stage: str, fraction: float, message: str | None) -> None:
    return None


@dataclass
class Progress:
    """What a stage needs to talk back: a sink for progress, a cancel token, a list of warnings."""

    sink: ProgressSink = _ignore
    cancel: CancelToken = field(default_factory=CancelToken)
    warnings: list[str] = field(default_factory=list)

    def update(self, stage: str, fraction: float, message: str | None = None) -> None:
        self.sink(stage, min(max(fraction, 0.0), 1.0), message)

    def check(self) -> None:
        self.cancel.check()

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
