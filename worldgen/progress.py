"""Progress reporting and cooperative cancellation shared by every stage.

Stages call `progress.step(...)` between units of work; a cancel request (SIGTERM in the
container, DELETE/cancel in the API) makes the next check raise `Cancelled`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
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

UPLOAD_SHARE = 0.04
"""The share of a job's overall progress that uploading its files takes (after the pipeline's)."""


def before_upload(fraction: float) -> float:
    """A pipeline's overall fraction as the job's: the last UPLOAD_SHARE is the upload's."""
    return min(max(fraction, 0.0), 1.0) * (1 - UPLOAD_SHARE)


def uploading(done: int, total: int) -> float:
    """The job's overall fraction once `done` of `total` files are uploaded."""
    return before_upload(1.0) + UPLOAD_SHARE * (done / total if total else 1.0)


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

    def span(self, stage: str, start: float, end: float, label: str | None = None) -> Progress:
        """A Progress for one part of `stage`: its fractions 0..1 of `stage` land in start..end of
        this one's, and its messages read "label: message" (other stages pass through unchanged).
        Cancel token and warnings are shared."""

        def sink(reported: str, fraction: float, message: str | None) -> None:
            if reported == stage:
                fraction = start + (end - start) * min(max(fraction, 0.0), 1.0)
                if label:
                    message = f"{label}: {message}" if message else label
            self.update(reported, fraction, message)

        return Progress(sink=sink, cancel=self.cancel, warnings=self.warnings)

    def parts(self, stage: str, weights: Sequence[float], labels: Sequence[str | None] | None = None) -> list[Progress]:
        """`stage` cut into consecutive spans in proportion to `weights` (one Progress each)."""
        total = float(sum(weights)) or 1.0
        labels = list(labels) if labels is not None else [None] * len(weights)
        spans, start = [], 0.0
        for weight, label in zip(weights, labels, strict=True):
            end = min(1.0, start + weight / total)
            spans.append(self.span(stage, start, end, label))
            start = end
        return spans

    def check(self) -> None:
        self.cancel.check()

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
