"""One world under the container contract (`run`); `container/main.py` is the ENTRYPOINT that
calls it for a single world, `batch.py` and `serve.py` for many.

Exit status 0 on success; on failure the reason ('code: message', ≤ 1 KB) goes to
/opt/ml/output/message and the status is non-zero (when even that directory is unwritable, the
reason goes to stderr only, i.e. CloudWatch). SIGTERM (SageMaker's StopProcessingJob, the
local worker's cancel) stops the job at the next step boundary, well inside 30 s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import traceback

from pydantic import ValidationError

from worldgen.container.contract import (
    EXIT_CANCELED,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    MESSAGE_LIMIT,
    ContainerPaths,
)
from worldgen.container.cost import add_cost, process_age_seconds
from worldgen.container.progress_file import ProgressFile
from worldgen.container.runtimes import RuntimePool
from worldgen.errors import Cancelled, InvalidRequest, WorldgenError
from worldgen.progress import CancelToken, Progress
from worldgen.request import WorldRequest, validation_problems

log = logging.getLogger("worldgen.container")


def write_message(paths: ContainerPaths, code: str, message: str) -> None:
    paths.message_file.parent.mkdir(parents=True, exist_ok=True)
    text = f"{code}: {message}".encode()[:MESSAGE_LIMIT].decode("utf-8", errors="ignore")
    paths.message_file.write_text(text)


def load_request(paths: ContainerPaths) -> WorldRequest:
    try:
        data = json.loads(paths.request_file.read_text())
    except FileNotFoundError:
        raise InvalidRequest(f"no request at {paths.request_file}") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"request.json is not valid JSON: {exc}") from None
    try:
        request = WorldRequest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{field}: {message}" for field, message in validation_problems(exc))
        raise InvalidRequest(f"invalid request: {problems}") from None
    if request.seed is None:
        raise InvalidRequest("request.json must carry a seed (the service resolves it before dispatch)")
    return request


def unwritable_mounts(paths: ContainerPaths) -> list[str]:
    """The output directories this process cannot write, each with the reason. SageMaker creates
    them as root before the container starts, so a non-root user cannot write its results, nor
    even the failure message: found first, the job can at least say so on stderr."""
    problems = []
    for directory in (paths.output_dir, paths.message_file.parent):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=directory):
                pass
        except OSError as exc:
            problems.append(f"{directory} ({exc.strerror or exc})")
    return problems


def run(
    paths: ContainerPaths,
    runtimes: RuntimePool | None = None,
    cancel: CancelToken | None = None,
    *,
    startup_s: float | None = None,
    batch_size: int = 1,
) -> int:
    """One world under `paths`. On its own (the image, `worldgen container run`) it owns the
    process: a fresh runtime, SIGTERM cancels. A warm server or a batch passes its runtime pool,
    the world's cancel token, and the world's share of the process's startup (for its cost)."""
    if problems := unwritable_mounts(paths):
        message = (
            f"cannot write {'; '.join(problems)} as uid {os.getuid()}: SageMaker creates "
            "/opt/ml/processing/output/* and /opt/ml/output owned by root, so the image must run as root "
            "(docker/Dockerfile, docs/deploy.md)"
        )
        print(f"worldgen: unwritable_output: {message}", file=sys.stderr)
        with contextlib.suppress(OSError):
            write_message(paths, "unwritable_output", message)
        return EXIT_FAILED

    from worldgen.models.device import require_gpu
    from worldgen.pipeline import WorldInputs, generate_world

    if cancel is None:
        cancel = CancelToken()
        signal.signal(signal.SIGTERM, lambda signum, frame: cancel.cancel("stopped (SIGTERM)"))
    runtimes = runtimes or RuntimePool(keep=False)
    if startup_s is None:
        startup_s = process_age_seconds()
    progress_file = ProgressFile(paths.progress_file)
    progress = Progress(sink=progress_file, cancel=cancel)
    try:
        request = load_request(paths)
        log.info("request loaded (seed %s); models from %s", request.seed, paths.models_dir)
        progress_file.set(status="running", stage="loading_models", seed=request.seed)
        device = os.environ.get("WORLDGEN_DEVICE") or None
        require_gpu(device, request.precision)
        runtime = runtimes.runtime(paths.models_dir, device, request.precision)
        log.info("device %s, precision %s (%s)", runtime.device, runtime.precision.mode, runtime.precision.reason)
        manifest = generate_world(request, runtime, paths.output_dir, progress, WorldInputs(paths.uploads_dir))
        add_cost(paths, startup_s, batch_size)
        log.info("done in %.1f s: %d files", manifest["timings_s"]["total"], len(manifest["files"]))
    except Cancelled as exc:
        log.info("stopped: %s", exc.message)
        write_message(paths, "canceled", exc.message)
        progress_file.set(status="canceled", warnings=progress.warnings)
        return EXIT_CANCELED
    except WorldgenError as exc:
        log.error("failed: %s: %s", exc.code, exc.message)
        write_message(paths, exc.code, exc.message)
        progress_file.set(status="failed", warnings=progress.warnings)
        return EXIT_INVALID if isinstance(exc, InvalidRequest) else EXIT_FAILED
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        write_message(paths, "internal_error", f"{type(exc).__name__}: {exc}")
        progress_file.set(status="failed", warnings=progress.warnings)
        return EXIT_FAILED
    progress_file.set(status="succeeded", progress=1.0, warnings=progress.warnings)
    return EXIT_OK
