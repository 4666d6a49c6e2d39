"""Layer decomposition (method §4 steps 1–5): super-resolution, foreground objects of two layers
found and painted away, and the sky painted over the ground for an outdoor sky layer.

Models take turns: ESRGAN, Grounding DINO and ZIM load for their step and leave; the Fill
transformer is loaded once (after all prompts were encoded) and serves the fg1, fg2 and sky
passes through switchable LoRA adapters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from worldgen.models.grounding_dino import GroundingDino
from worldgen.models.runtime import ModelRuntime
from worldgen.models.zim import ZimPredictor
from worldgen.progress import Progress
from worldgen.stages import segmentation as seg
from worldgen.stages.inpaint import ADAPTERS, Inpainter, inpainter, scene_pass, sky_pass
from worldgen.stages.inpaint import BASE_MODEL as INPAINT_MODEL
from worldgen.stages.super_resolution import MODEL as SR_MODEL
from worldgen.stages.super_resolution import super_resolve


@dataclass
class LayerRequest:
    scene: str
    labels: dict[str, list[str]]
    """"fg1"/"fg2" → labels to detect."""
    objects: dict[str, list[dict]]
    """"fg1"/"fg2" → explicit boxes [{"label", "box"}] in panorama pixels (skip detection)."""
    steps: int = 50
    seed: int = 25
    step_cache: str = "off"
    vae_mode: str = "full-frame"

    def wants(self, layer: str) -> bool:
        return bool(self.labels.get(layer) or self.objects.get(layer))


def removed_labels(request: LayerRequest, layer: str) -> list[str]:
    """What a layer's pass removes, for its negative prompt: the reference appends the requested
    labels; explicit boxes (ours only) name theirs, each once."""
    objects = request.objects.get(layer) or []
    if objects:
        return list(dict.fromkeys(str(o["label"]) for o in objects))
    return list(request.labels.get(layer) or [])


@dataclass
class LayeredImages:
    """Everything the world composition needs, at the super-resolved size (2H × 2W)."""

    full: np.ndarray
    full_sr: np.ndarray
    removed: dict[str, np.ndarray] = field(default_factory=dict)
    """"fg1"/"fg2" → the panorama with that layer painted away (original size)."""
    removed_sr: dict[str, np.ndarray] = field(default_factory=dict)
    instances: dict[str, list[seg.Instance]] = field(default_factory=dict)
    sky: np.ndarray | None = None
    """(2H, 2W) bool, True = sky (outdoor only)."""
    sky_sr: np.ndarray | None = None
    """The sky panorama (ground painted over), super-resolved."""

    def mask(self, layer: str) -> np.ndarray | None:
        instances = self.instances.get(layer)
        return np.any([i.mask for i in instances], axis=0) if instances else None


def models_for(request: LayerRequest) -> list[str]:
    """The models `decompose` loads for `request`, roughly in the order it loads them (the job
    prefetches them): ESRGAN; with any pass, both adapters and the Fill model; Grounding DINO
    when something is found by label (the sky included), ZIM for every matte."""
    layers = [name for name in ("fg1", "fg2") if request.wants(name)]
    outdoor = request.scene == "outdoor"
    models = [SR_MODEL]
    if not (layers or outdoor):
        return models
    models += [*ADAPTERS.values(), INPAINT_MODEL]
    if outdoor or any(not request.objects.get(name) for name in layers):
        models.append("grounding-dino")
    return [*models, "zim"]


def decompose(
    runtime: ModelRuntime, panorama: np.ndarray, request: LayerRequest, out_dir: Path, progress: Progress
) -> LayeredImages:
    with image_files(out_dir) as save:
        return _decompose(runtime, panorama, request, out_dir, save, progress)


# Shares of the layers stage: a super-resolution, finding one layer's objects (detection and
# mattes), and one inpainting pass (true CFG: two transformer passes a step, the stage's bulk).
SR_SHARE, FIND_SHARE, PAINT_SHARE = 1.0, 1.0, 6.0


def _decompose(
    runtime: ModelRuntime,
    panorama: np.ndarray,
    request: LayerRequest,
    out_dir: Path,
    save: SaveImage,
    progress: Progress,
) -> LayeredImages:
    height, width = panorama.shape[:2]
    outdoor = request.scene == "outdoor"
    layers = [name for name in ("fg1", "fg2") if request.wants(name)]
    names = [*layers, *(["sky"] if outdoor else [])]
    # One part for the first super-resolution, then per pass: find, paint, super-resolve the result.
    parts = progress.parts(
        "layers",
        [SR_SHARE, *[share for _ in names for share in (FIND_SHARE, PAINT_SHARE, SR_SHARE)]],
        ["super-resolution", *[label for name in names for label in (name, name, f"{name}: super-resolution")]],
    )
    parts[0].update("layers", 0.0)
    (full_sr,) = super_resolve(runtime, [panorama], parts[0])
    result = LayeredImages(full=panorama, full_sr=full_sr)
    save("full_image_sr.png", full_sr)
    passes = [scene_pass(n, request.scene, removed_labels(request, n)) for n in layers]
    if outdoor:
        passes.append(sky_pass())
    if not passes:
        progress.update("layers", 1.0, "done")
        return result
    with inpainter(
        runtime,
        passes,
        progress,
        steps=request.steps,
        seed=request.seed,
        step_cache=request.step_cache,
        vae_mode=request.vae_mode,
    ) as painter:
        current, current_sr = panorama, full_sr
        for index, layer in enumerate(layers):
            find, paint, upscale_part = parts[1 + 3 * index : 4 + 3 * index]
            instances = find_objects(runtime, current, current_sr, request, layer, find)
            result.instances[layer] = instances
            seg.write_layer_files(out_dir, layer, instances, full_sr.shape[:2])
            if not instances:
                progress.warn(f"{layer}: no object found for {request.labels.get(layer) or 'the given boxes'}")
                continue
            mask = seg.to_panorama_size(seg.inpaint_mask(instances, full_sr.shape[:2]), height, width)
            spec = next(p for p in passes if p.name == layer)
            current = painter.run(spec, current, mask, paint)
            upscale_part.update("layers", 0.0)
            (current_sr,) = super_resolve(runtime, [current], upscale_part)
            result.removed[layer], result.removed_sr[layer] = current, current_sr
            save(f"remove_{layer}_image.png", current)
            save(f"remove_{layer}_image_sr.png", current_sr)
        if outdoor:
            paint_sky(runtime, painter, current, current_sr, result, save, parts[-3:])
    progress.update("layers", 1.0, "done")
    return result


def find_objects(
    runtime: ModelRuntime,
    image: np.ndarray,
    image_sr: np.ndarray,
    request: LayerRequest,
    layer: str,
    progress: Progress | None = None,
) -> list[seg.Instance]:
    """The layer's objects: the given boxes, or Grounding DINO's detections; then ZIM's mattes.
    `progress`: this step's part of the layers stage."""
    progress = progress or Progress()
    width = image.shape[1]
    pad_sr = image_sr.shape[1] // 2
    objects = request.objects.get(layer) or []
    if objects:
        boxes = seg.explicit_boxes(objects, width, pad_sr)
        scores = np.ones(len(boxes))
        labels = [o["label"] for o in objects]
    else:
        progress.update("layers", 0.0, f"finding {', '.join(request.labels[layer])}")
        pad = width // 2
        with runtime.hold(
            "grounding-dino:model",
            "grounding-dino",
            lambda: GroundingDino(runtime.path("grounding-dino"), runtime.device),
        ) as detector:
            found = detector.detect(seg.wrap_pad_left(image, pad), request.labels[layer])
        boxes, scores, labels = seg.select_detections(
            found.boxes, found.scores, found.labels, outdoor=request.scene == "outdoor"
        )
    if len(boxes) == 0:
        return []
    progress.update("layers", 0.5, f"matting {len(boxes)} object{'s' if len(boxes) != 1 else ''}")
    padded_sr = seg.wrap_pad_left(image_sr, pad_sr)
    with runtime.hold(
        "zim:model", "zim", lambda: ZimPredictor(runtime.path("zim") / "zim_vit_l_2092", runtime.device)
    ) as zim:
        zim.set_image(padded_sr)
        masks = zim.box_masks(boxes)
    instances = seg.postprocess(labels, scores, boxes, masks, pad_sr)
    progress.update("layers", 1.0, f"{len(instances)} object{'s' if len(instances) != 1 else ''} kept")
    return instances


def paint_sky(
    runtime: ModelRuntime,
    painter: Inpainter,
    image: np.ndarray,
    image_sr: np.ndarray,
    result: LayeredImages,
    save: SaveImage,
    parts: list[Progress],
) -> None:
    """Detect the sky, then paint the ground over with sky (the Sky adapter) for the sky layer.
    Like the reference, sky boxes whose mattes come out empty still give a sky panorama (painted
    everywhere); sky_mask.png is white where there is NO sky, the region painted over. `parts`:
    the finding, painting and super-resolution parts of the layers stage."""
    find, paint, upscale_part = parts
    find.update("layers", 0.0, "finding the sky")
    with runtime.hold(
        "grounding-dino:model", "grounding-dino", lambda: GroundingDino(runtime.path("grounding-dino"), runtime.device)
    ) as detector:
        found = detector.detect(image, ["sky"])
    if len(found.boxes) == 0:
        find.warn("no sky found: the world has no sky layer")
        return
    boxes, _, _ = seg.select_detections(found.boxes, found.scores, found.labels, outdoor=False, min_left=None)
    find.update("layers", 0.5, "matting the sky")
    with runtime.hold(
        "zim:model", "zim", lambda: ZimPredictor(runtime.path("zim") / "zim_vit_l_2092", runtime.device)
    ) as zim:
        zim.set_image(image_sr)
        masks = zim.box_masks(boxes)
    sky = seg.sky_mask(masks, image_sr.shape[:2])
    if not sky.any():
        find.warn("the sky mask is empty: the sky layer is painted over the whole panorama")
    result.sky = sky
    save("sky_mask.png", np.where(sky, 0, 255).astype(np.uint8))
    height, width = image.shape[:2]
    mask = seg.to_panorama_size(seg.sky_inpaint_mask(sky), height, width)
    sky_image = painter.run(sky_pass(), image, mask, paint)
    upscale_part.update("layers", 0.0)
    (result.sky_sr,) = super_resolve(runtime, [sky_image], upscale_part)
    save("sky_image.png", sky_image)
    save("sky_image_sr.png", result.sky_sr)


SaveImage = Callable[[str, np.ndarray], None]


@contextmanager
def image_files(out_dir: Path) -> Iterator[SaveImage]:
    """`save(name, image)` writes a PNG into `out_dir` on a background thread, so the GPU work goes
    on meanwhile (a noisy 3840×1920 PNG is ≈ 1.3 s of zlib, eight a layered world). Every file is
    written when the block ends; a failed write raises then, unless the block itself failed."""
    pending: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="png") as pool:

        def save(name: str, image: np.ndarray) -> None:
            pending.append(pool.submit(_save, out_dir / name, image.copy()))

        yield save
    for future in pending:
        future.result()


def _save(path: Path, image: np.ndarray) -> None:
    Image.fromarray(image).save(path)
