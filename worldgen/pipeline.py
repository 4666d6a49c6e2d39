"""The world pipeline: a WorldRequest in, a directory of results and manifest.json out.

This is what the container entrypoint runs and what `worldgen generate` runs in-process. Stages
take turns; each reports progress within itself and the plan below turns that into one overall
fraction for the job. The models of the next stage are read into the page cache in the background
while the current stage computes (`ModelRuntime.prefetch`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from worldgen.errors import InvalidRequest
from worldgen.geometry.compression import compress_background
from worldgen.geometry.mesh import Mesh
from worldgen.manifest import file_entry, resources, versions
from worldgen.models.runtime import ModelRuntime
from worldgen.outputs import MANIFEST_FILE, PROGRESS_FILE, write_json_atomic
from worldgen.pipeline_inputs import SOURCE_WORLD_INPUT
from worldgen.progress import Progress, Stage
from worldgen.reference import behaviour
from worldgen.request import WorldRequest
from worldgen.stages.compose import compose_layers
from worldgen.stages.depth import MODEL as DEPTH_MODEL
from worldgen.stages.depth import estimate_depth
from worldgen.stages.export import export_panorama, export_world
from worldgen.stages.image_to_panorama import PREFETCH as IMAGE_PANORAMA_MODELS
from worldgen.stages.image_to_panorama import image_to_panorama
from worldgen.stages.layers import LayerRequest, decompose, models_for
from worldgen.stages.panorama import PanoramaResult, PanoramaSpec
from worldgen.stages.text_to_panorama import PREFETCH as TEXT_PANORAMA_MODELS
from worldgen.stages.text_to_panorama import text_to_panorama
from worldgen.stages.world_mesh import Layer, build_meshes

# Each stage's share of the overall progress bar, in rough units of work on a GPU at full size
# (one panorama's sampling = 1); normalised over the stages a request runs. The layers' inpainting
# passes (true CFG: two transformer passes a step) and the depth estimates count one each.
STAGE_WEIGHTS = {
    Stage.LOADING_MODELS: 0.15,
    Stage.PANORAMA: 1.0,
    Stage.LAYERS: 0.1,
    Stage.DEPTH: 0.15,
    Stage.MESH: 0.1,
    Stage.EXPORT: 0.3,
}
INPAINT_PASS_WEIGHT = 1.5
DEPTH_ESTIMATE_WEIGHT = 0.15


def stage_weights(request: WorldRequest, stages: list[Stage]) -> dict[Stage, float]:
    """The share of each of `stages` for this request: the layers stage grows with its inpainting
    passes (fg1, fg2, the sky outdoors), the depth stage with its estimates (up to three)."""
    weights = {stage: STAGE_WEIGHTS[stage] for stage in stages}
    if Stage.LAYERS in weights:
        wanted = [layer for layer in ("fg1", "fg2") if getattr(request, f"labels_{layer}")
                  or getattr(request, f"objects_{layer}")]  # fmt: skip
        passes = len(wanted) + (request.scene == "outdoor")
        weights[Stage.LAYERS] += INPAINT_PASS_WEIGHT * passes
        if Stage.DEPTH in weights:
            weights[Stage.DEPTH] = DEPTH_ESTIMATE_WEIGHT * (1 + len(wanted))
    return weights


@dataclass
class WorldInputs:
    """Files a request refers to by upload id, as local paths (the container's input channel)."""

    uploads_dir: Path | None = None

    def upload(self, upload_id: str) -> Path:
        """The upload's file: `uploads/{id}` (local worker) or the one file in `uploads/{id}/` (SageMaker)."""
        path = (self.uploads_dir / upload_id) if self.uploads_dir else None
        if path is not None and path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file())
            path = files[0] if len(files) == 1 else None
        if path is None or not path.is_file():
            raise InvalidRequest(f"upload {upload_id!r} is not available to this job", details={"upload": upload_id})
        return path


@dataclass
class StagePlan:
    """Maps (stage, fraction within stage) to one monotonic overall fraction, and times stages."""

    stages: list[Stage]
    sink: Any
    weights: dict[Stage, float] = field(default_factory=dict)
    """Each stage's share (default: STAGE_WEIGHTS)."""
    timings: dict[str, float] = field(default_factory=dict)
    _overall: float = 0.0

    def report(self, stage: str, fraction: float, message: str | None) -> None:
        key = Stage(stage)
        weights = {s: self.weights.get(s, STAGE_WEIGHTS.get(s, 0.0)) for s in self.stages}
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


def plan_for(request: WorldRequest, until: str = "world") -> list[Stage]:
    stages = [Stage.LOADING_MODELS]
    if not (request.panorama_upload_id or request.source_world_id):
        stages.append(Stage.PANORAMA)
    if until == "panorama":
        return [*stages, Stage.EXPORT]
    if request.layered:
        stages += [Stage.LAYERS, Stage.DEPTH]
    elif not request.distance_upload_id:
        stages.append(Stage.DEPTH)
    return [*stages, Stage.MESH, Stage.EXPORT]


def models_ahead(request: WorldRequest, until: str = "world") -> list[str]:
    """What the job loads up to the start of its depth stage, in order: the panorama stage's
    models, then the next stage's (the layers' for a layered world, MoGe for a single layer)."""
    models: list[str] = []
    if not (request.panorama_upload_id or request.source_world_id):
        models += IMAGE_PANORAMA_MODELS if request.image_upload_id else TEXT_PANORAMA_MODELS
    if until == "panorama":
        return models
    if request.layered:
        return [*models, *models_for(layer_request(request))]
    return [*models, DEPTH_MODEL] if not request.distance_upload_id else models


def models_needed(request: WorldRequest) -> list[str]:
    """Every model the job loads, in the order it first needs them (what a container streams)."""
    models = models_ahead(request, request.stage)
    if request.stage == "world" and (request.layered or not request.distance_upload_id):
        models.append(DEPTH_MODEL)
    return list(dict.fromkeys(models))


def layer_request(request: WorldRequest) -> LayerRequest:
    return LayerRequest(
        scene=request.scene.value,
        labels={"fg1": list(request.labels_fg1), "fg2": list(request.labels_fg2)},
        objects={"fg1": request.objects("fg1"), "fg2": request.objects("fg2")},
        steps=request.steps,
        seed=request.inpaint_seed,
        step_cache=request.step_cache,
        vae_mode=request.vae_mode,
    )


def generate_world(
    request: WorldRequest,
    runtime: ModelRuntime,
    out_dir: Path,
    progress: Progress,
    inputs: WorldInputs | None = None,
    until: str | None = None,
) -> dict[str, Any]:
    """Run every stage the request needs (`until="panorama"`, by default the request's `stage`,
    stops after the panorama); write outputs and manifest.json into `out_dir`."""
    assert request.seed is not None, "the seed is resolved before the pipeline runs"
    until = until or request.stage
    try:
        return _generate(request, runtime, out_dir, progress, inputs, until)
    finally:
        runtime.close()  # stop background reads whatever happened


def _generate(
    request: WorldRequest,
    runtime: ModelRuntime,
    out_dir: Path,
    progress: Progress,
    inputs: WorldInputs | None,
    until: str,
) -> dict[str, Any]:
    inputs = inputs or WorldInputs()
    runtime.begin_job()
    out_dir.mkdir(parents=True, exist_ok=True)
    stages = plan_for(request, until)
    plan = StagePlan(stages, progress.sink, stage_weights(request, stages))
    staged = Progress(sink=plan.report, cancel=progress.cancel, warnings=progress.warnings)
    started = time.perf_counter()
    runtime.prefetch(*models_ahead(request, until))

    if request.panorama_upload_id or request.source_world_id:
        panorama = load_panorama(inputs.upload(request.panorama_upload_id or SOURCE_WORLD_INPUT))
        panorama_settings: dict[str, Any] = {
            "mode": "uploaded" if request.panorama_upload_id else "source_world",
            "height": panorama.shape[0],
            "width": panorama.shape[1],
        }
        if request.source_world_id:
            panorama_settings["source_world_id"] = request.source_world_id
    else:
        with plan.timed(Stage.PANORAMA):
            result = _panorama(request, runtime, staged, inputs)
        panorama, panorama_settings = result.image, result.settings
    staged.check()
    meshes: list[Mesh] = []
    if until == "panorama":
        with plan.timed(Stage.EXPORT):
            staged.update(Stage.EXPORT, 0.0, "panorama.png")
            export_panorama(out_dir, panorama)
            staged.update(Stage.EXPORT, 1.0, "done")
    else:
        meshes = _world(request, runtime, out_dir, staged, inputs, plan, panorama)
    return _write_manifest(request, runtime, out_dir, progress, plan, started, panorama_settings, meshes)


def _world(
    request: WorldRequest,
    runtime: ModelRuntime,
    out_dir: Path,
    staged: Progress,
    inputs: WorldInputs,
    plan: StagePlan,
    panorama: np.ndarray,
) -> list[Mesh]:
    """Layers → depth → meshes → files (or one background layer when `layered` is off)."""
    given = (
        load_distance(inputs.upload(request.distance_upload_id), panorama.shape[:2])
        if request.distance_upload_id
        else None
    )
    if request.layered:
        runtime.prefetch(DEPTH_MODEL)  # read while the inpaintings run (compose_layers always loads it)
        with plan.timed(Stage.LAYERS):
            images = decompose(runtime, panorama, layer_request(request), out_dir, staged)
        with plan.timed(Stage.DEPTH):
            layers, full = compose_layers(
                runtime,
                images,
                indoor=request.scene == "indoor",
                compression=request.depth_compression,
                progress=staged,
                given=given,
            )
        raw_distance = full.distance
    else:
        if given is None:
            with plan.timed(Stage.DEPTH):
                given = estimate_depth(runtime, panorama, staged).distance
        raw_distance = given
        distance = given
        if request.depth_compression:
            distance = compress_background(given, np.ones(given.shape, bool), indoor=request.scene == "indoor")
        layers = [Layer("background", panorama, distance)]
    staged.check()
    with plan.timed(Stage.MESH):
        meshes = build_meshes(layers, staged)
    with plan.timed(Stage.EXPORT):
        export_world(out_dir, layers, meshes, {f.value for f in request.formats}, panorama, raw_distance, staged)
    return meshes


def _write_manifest(
    request: WorldRequest,
    runtime: ModelRuntime,
    out_dir: Path,
    progress: Progress,
    plan: StagePlan,
    started: float,
    panorama_settings: dict[str, Any],
    meshes: list[Mesh],
) -> dict[str, Any]:
    plan.timings[Stage.LOADING_MODELS.value] = round(sum(runtime.load_seconds.values()), 3)
    runtime.close()  # every load is done: the prefetch stats are final
    plan.timings["total"] = round(time.perf_counter() - started, 3)
    manifest = {
        "request": request.model_dump(mode="json"),
        "seed": request.seed,
        "panorama": panorama_settings,
        "precision": runtime.precision.as_dict(),
        "behaviour": behaviour(request, runtime.precision.mode.value),
        "layers": [
            {"index": i, "name": m.name, "vertices": m.vertex_count, "faces": m.face_count}
            for i, m in enumerate(meshes)
        ],
        "frames": {
            "ply_drc": "method frame: +z up, panorama centre along -x, seam at +x",
            "glb": "glTF: +y up, panorama centre along -z; x' = y, y' = z, z' = x",
        },
        "versions": versions(),
        "timings_s": plan.timings,
        "model_load_s": {k: round(v, 3) for k, v in runtime.load_seconds.items()},
        "peak_resident_models": runtime.peak_resident,
        "model_loads": runtime.loads,
        "model_reuses": runtime.reuses,
        "parked_models": {"models": list(runtime.parked), "gib": round(runtime.parked_bytes() / (1 << 30), 3)},
        "prefetch": runtime.prefetch_stats(),
        "resources": resources(runtime.device),
        "cost": None,  # the container fills it in (container/cost.py): it knows the instance and the batch
        "warnings": list(progress.warnings),
        "files": [
            file_entry(path, out_dir)
            for path in sorted(out_dir.rglob("*"))
            if path.is_file() and path.name not in (MANIFEST_FILE, PROGRESS_FILE) and not path.name.startswith(".")
        ],
    }
    write_json_atomic(out_dir / MANIFEST_FILE, manifest)
    return manifest


def load_panorama(path: Path) -> np.ndarray:
    image = np.asarray(Image.open(path).convert("RGB"))
    height, width = image.shape[:2]
    if width != 2 * height:
        raise InvalidRequest(f"the panorama must be 2:1, got {width}×{height}", details={"field": "panorama_upload_id"})
    return image


def load_distance(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A user's distance map, resized to the panorama; unusable values become the farthest valid one."""
    try:
        distance = np.load(path, allow_pickle=False).astype(np.float32)
    except (ValueError, OSError) as exc:
        raise InvalidRequest(f"the distance map is not a readable .npy array: {exc}") from None
    if distance.ndim != 2:
        raise InvalidRequest("the distance map must be a 2-D array", details={"field": "distance_upload_id"})
    valid = np.isfinite(distance) & (distance > 0)
    if not valid.any():
        raise InvalidRequest("the distance map has no positive finite value", details={"field": "distance_upload_id"})
    distance = np.where(valid, distance, distance[valid].max())
    if distance.shape != size:
        distance = cv2.resize(distance, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return distance


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
        vae_mode=request.vae_mode,
    )
    if request.image_upload_id:
        photo = np.asarray(Image.open(inputs.upload(request.image_upload_id)).convert("RGB"))
        return image_to_panorama(runtime, spec, photo, progress)
    return text_to_panorama(runtime, spec, progress)
