"""The world pipeline: a WorldRequest in, a directory of results and manifest.json out.

This is what the container entrypoint runs and what `worldgen generate` runs in-process. Stages
take turns; each reports progress within itself and the plan below turns that into one overall
fraction for the job.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from worldgen.container.contract import MANIFEST_FILE, PROGRESS_FILE
from worldgen.container.progress_file import write_json_atomic
from worldgen.errors import InvalidRequest
from worldgen.jobs.state import Stage
from worldgen.manifest import file_entry, resources, versions
from worldgen.models.runtime import ModelRuntime
from worldgen.progress import Progress
from worldgen.request import WorldRequest
from worldgen.stages.image_to_panorama import image_to_panorama
from worldgen.stages.panorama import PanoramaResult, PanoramaSpec
from worldgen.stages.text_to_panorama import text_to_panorama

# Share of the overall progress bar per stage (normalised over the stages a request runs).
STAGE_WEIGHTS = {
    Stage.LOADING_MODELS: 0.05,
    Stage.PANORAMA: 0.55,
    Stage.LAYERS: 0.15,
    Stage.DEPTH: 0.1,
    Stage.MESH: 0.1,
    Stage.EXPORT: 0.05,
}


@dataclass
class WorldInputs:
    """Files a request refers to by upload id, as local paths (the container's input channel)."""

    uploads_dir: Path | None = None

    def upload(self, upload_id: str) -> Path:
        path = (self.uploads_dir / upload_id) if self.uploads_dir else None
        if path is None or not path.is_file():
            raise InvalidRequest(f"upload {upload_id!r} is not available to this job", details={"upload": upload_id})
        return path


@dataclass
class StagePlan:
    """Maps (stage, fraction within stage) to one monotonic overall fraction, and times stages."""

    stages: list[Stage]
    sink: Any
    timings: dict[str, float] = field(default_factory=dict)
    _overall: float = 0.0

    def report(self, stage: str, fraction: float, message: str | None) -> None:
        key = Stage(stage)
        weights = {s: STAGE_WEIGHTS[s] for s in self.stages}
        total = sum(weights.values())
        before = sum(weights[s] for s in self.stages[: self.stages.index(key)]) if key in weights else 0.0
        overall = (before + weights.get(key, 0.0) * fraction) / total
        self._overall = max(self._overall, min(overall, 1.0))
        self.sink(stage, self._overall, message)

    @contextmanager
    def timed(self, stage: Stage) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage.value] = round(self.timings.get(stage.value, 0.0) + time.perf_counter() - started, 3)


def plan_for(request: WorldRequest) -> list[Stage]:
    return [Stage.LOADING_MODELS, Stage.PANORAMA, Stage.EXPORT]


def generate_world(
    request: WorldRequest,
    runtime: ModelRuntime,
    out_dir: Path,
    progress: Progress,
    inputs: WorldInputs | None = None,
) -> dict[str, Any]:
    """Run every stage the request needs; write outputs and manifest.json into `out_dir`."""
    assert request.seed is not None, "the seed is resolved before the pipeline runs"
    inputs = inputs or WorldInputs()
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = StagePlan(plan_for(request), progress.sink)
    staged = Progress(sink=plan.report, cancel=progress.cancel, warnings=progress.warnings)
    started = time.perf_counter()

    with plan.timed(Stage.PANORAMA):
        panorama = _panorama(request, runtime, staged, inputs)
    staged.check()
    with plan.timed(Stage.EXPORT):
        staged.update(Stage.EXPORT, 0.0, "panorama.png")
        Image.fromarray(panorama.image).save(out_dir / "panorama.png")
        staged.update(Stage.EXPORT, 1.0, "done")

    plan.timings[Stage.LOADING_MODELS.value] = round(sum(runtime.load_seconds.values()), 3)
    plan.timings["total"] = round(time.perf_counter() - started, 3)
    manifest = {
        "request": request.model_dump(mode="json"),
        "seed": request.seed,
        "panorama": panorama.settings,
        "precision": runtime.precision.as_dict(),
        "versions": versions(),
        "timings_s": plan.timings,
        "model_load_s": {k: round(v, 3) for k, v in runtime.load_seconds.items()},
        "peak_resident_models": runtime.peak_resident,
        "resources": resources(runtime.device),
        "warnings": list(progress.warnings),
        "files": [
            file_entry(path, out_dir)
            for path in sorted(out_dir.rglob("*"))
            if path.is_file() and path.name not in (MANIFEST_FILE, PROGRESS_FILE) and not path.name.startswith(".")
        ],
    }
    write_json_atomic(out_dir / MANIFEST_FILE, manifest)
    return manifest


def _panorama(request: WorldRequest, runtime: ModelRuntime, progress: Progress, inputs: WorldInputs) -> PanoramaResult:
    spec = PanoramaSpec(
        prompt=request.prompt,
        seed=int(request.seed or 0),
        negative_prompt=request.negative_prompt,
        height=request.height,
        width=request.width,
        steps=request.steps,
        guidance=request.guidance,
        true_cfg_scale=request.true_cfg_scale,
        step_cache=request.step_cache,
    )
    if request.image_upload_id:
        photo = np.asarray(Image.open(inputs.upload(request.image_upload_id)).convert("RGB"))
        return image_to_panorama(runtime, spec, photo, progress)
    return text_to_panorama(runtime, spec, progress)
