"""`worldgen container run`: one world (request.json) or a batch (worlds.json, SageMaker) under
the contract root; the image's ENTRYPOINT."""

from __future__ import annotations

import time
from pathlib import Path

from worldgen.container.batch import run_batch
from worldgen.container.contract import ContainerPaths
from worldgen.container.cost import process_age_seconds
from worldgen.container.entrypoint import run
from worldgen.container.runtimes import RuntimePool, model_stream


def main(root: Path | None = None) -> int:
    """One world (request.json) or a batch (worlds.json, SageMaker) under the contract root."""
    started = time.time() - process_age_seconds()
    paths = ContainerPaths.resolve(root)
    if paths.batch_file.is_file():
        return run_batch(paths, started)
    runtimes = RuntimePool(keep=False, stream=model_stream(paths, [paths.request_file]))
    try:
        return run(paths, runtimes)
    finally:
        runtimes.close()
