"""The model runtime(s) a container process runs worlds on.

A process that runs one world (the image's `container run`) creates a cold runtime for it. A
process that runs many (`container serve`, a SageMaker batch) keeps one warm runtime: models
are parked between worlds within `warm_budget`. A world that asks for another precision, device
or models root gets a new runtime; the old one's parked models are released first, so two sets
never share the card.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from worldgen.container.contract import ContainerPaths
from worldgen.models.runtime import ModelRuntime, warm_budget
from worldgen.models.streaming import ModelStream
from worldgen.request import WorldRequest

log = logging.getLogger("worldgen.container")


class RuntimePool:
    def __init__(self, keep: bool, stream: ModelStream | None = None) -> None:
        """`stream`: models arriving from S3 while the worlds run (a SageMaker container)."""
        self.keep, self.stream = keep, stream
        self.current: ModelRuntime | None = None
        self.key: tuple[str, str | None, str] | None = None
        self.created = 0
        """Runtimes made so far (a warm process makes one unless worlds differ in precision)."""

    def runtime(self, models_dir: Path, device: str | None, precision: str) -> ModelRuntime:
        root = models_dir.resolve()  # a world's models dir is a link into its own (temporary) root
        key = (str(root), device, str(precision))
        if self.current is not None and key == self.key:
            return self.current
        self.release()
        runtime = ModelRuntime.create(root, device=device, precision=precision)
        runtime.resolver.stream = self.stream
        if self.keep:
            runtime.keep_bytes = warm_budget(runtime.device)
        self.current, self.key = runtime, key
        self.created += 1
        return runtime

    def release(self) -> None:
        if self.current is not None:
            self.current.release_parked()
            self.current.close()
        self.current, self.key = None, None

    def close(self) -> None:
        """At the process's end: the runtime, and the stream if one is still reading."""
        self.release()
        if self.stream is not None:
            self.stream.close()


MODELS_URL_ENV = "WORLDGEN_MODELS_URL"


def model_stream(paths: ContainerPaths, request_files: list[Path]) -> ModelStream | None:
    """Where the launcher says models are in S3 (a SageMaker container), stream them onto the
    models root in the order these requests need them; None elsewhere."""
    url = os.environ.get(MODELS_URL_ENV)
    if not url:
        return None
    from worldgen.pipeline import models_needed

    order: list[str] = []
    for path in request_files:
        try:
            order += models_needed(WorldRequest.model_validate_json(path.read_bytes()))
        except (OSError, ValueError):
            continue  # that world reports its own bad request
    paths.models_dir.mkdir(parents=True, exist_ok=True)
    order = list(dict.fromkeys(order))
    log.info("streaming %d model(s) from %s", len(order), url)
    return ModelStream(url, paths.models_dir, order).start()
