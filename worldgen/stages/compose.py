"""Layered images → layered world (method §4 steps 6–8): depth per layer, aligned and compressed,
and the layers in mesh order fg1, fg2, background, sky.

MoGe stays loaded for all depth passes; a later layer re-predicts only the views its painted-away
region touches and takes the other views from the previous layer. Each later depth map is matched
to the full image's scale by the ratio of (lower) medians of the values below each map's 30th
percentile over the pixels both should agree on. docs/reference-parity.md has the audit.
"""

from __future__ import annotations

import cv2
import numpy as np

from worldgen.geometry.compression import compress_background, compress_foreground
from worldgen.geometry.mesh import foreground_keep
from worldgen.models.runtime import ModelRuntime
from worldgen.progress import Progress
from worldgen.stages.depth import PanoramaDepth, estimate_depth, hold_moge
from worldgen.stages.layers import LayeredImages
from worldgen.stages.world_mesh import SKY_MAX_WIDTH, Layer

KERNEL_SCALE = 2  # the super-resolved panorama is 3840 wide: the reference's kernel scale
FG_ERODE = int(2.5 * KERNEL_SCALE)
SKY_DILATE = 5 * KERNEL_SCALE
FG_DILATE = 3 * KERNEL_SCALE
SKY_MARGIN = 1.02
SKY_DEFAULT_DISTANCE = 3.0


def lower_median(values: np.ndarray) -> float:
    """The lower of the two middle values for an even count: torch.median's, which the reference uses."""
    return float(np.partition(values, (values.size - 1) // 2)[(values.size - 1) // 2])


def match_scale(reference: np.ndarray, other: np.ndarray, mask: np.ndarray, quantile: float = 0.3) -> np.ndarray:
    """`other` scaled so its near values agree with `reference` over `mask`."""
    if not mask.any():
        return other
    ref, oth = reference[mask], other[mask]
    ref_near = ref[ref < np.quantile(ref, quantile)]
    oth_near = oth[oth < np.quantile(oth, quantile)]
    if ref_near.size == 0 or oth_near.size == 0:
        return other  # the reference divides by an empty median here and meshes NaN
    return other * np.float32(lower_median(ref_near) / lower_median(oth_near))


def _foreground(name: str, image: np.ndarray, distance: np.ndarray, mask: np.ndarray, compression: bool) -> Layer:
    """A foreground layer: its outliers compressed, its mask eroded and cut at depth edges."""
    depth = compress_foreground(distance, mask) if compression else distance
    return Layer(name, image, depth, foreground_keep(mask, depth, erode=FG_ERODE))


def _dilate(mask: np.ndarray, size: int) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((size, size), np.uint8)) > 0


def compose_layers(
    runtime: ModelRuntime,
    images: LayeredImages,
    *,
    indoor: bool,
    compression: bool,
    progress: Progress,
    given: np.ndarray | None = None,
) -> tuple[list[Layer], PanoramaDepth]:
    """Layers in mesh order; `given` is a user's distance map for the full panorama (skips its estimation)."""
    with hold_moge(runtime) as model:
        return _compose(runtime, images, indoor, compression, progress, given, model)


def _compose(
    runtime: ModelRuntime,
    images: LayeredImages,
    indoor: bool,
    compression: bool,
    progress: Progress,
    given: np.ndarray | None,
    model,
) -> tuple[list[Layer], PanoramaDepth]:
    fg1, fg2 = images.mask("fg1"), images.mask("fg2")
    sky = images.sky if images.sky is not None and not indoor else None
    # The reference chooses its background compression settings by whether a sky image exists.
    indoor_policy = indoor or images.sky_sr is None
    sky_dilated = _dilate(sky, SKY_DILATE) if sky is not None else np.zeros(images.full_sr.shape[:2], bool)
    foreground = np.logical_or(fg1, fg2) if fg1 is not None and fg2 is not None else fg1 if fg1 is not None else fg2
    # The depth stage in parts: one per depth estimate (full panorama, fg2 layer, background), then
    # compression and the sky.
    both = fg1 is not None and fg2 is not None
    full_part, fg2_part, background_part, finish = progress.parts(
        "depth",
        [0.0 if given is not None else 1.0, 1.0 if both else 0.0, 0.0 if foreground is None else 1.0, 0.05],
        ["full panorama", "fg2 layer", "background", None],
    )
    full_part.update("depth", 0.0)
    if given is not None:
        height, width = images.full_sr.shape[:2]
        resized = cv2.resize(given, (width, height), interpolation=cv2.INTER_LINEAR)
        full = PanoramaDepth(resized.astype(np.float32), np.ones((height, width), bool), None)
    else:
        full = estimate_depth(runtime, images.full_sr, full_part, model=model)
    layers: list[Layer] = []
    last = full
    if fg1 is not None:
        layers.append(_foreground("fg1", images.full_sr, full.distance, fg1, compression))
    if fg2 is not None and fg1 is None:
        # fg2 alone: the reference meshes it from the full image's depth and colours.
        layers.append(_foreground("fg2", images.full_sr, full.distance, fg2, compression))
    elif fg2 is not None and fg1 is not None:
        fg2_part.update("depth", 0.0)
        source = images.removed_sr.get("fg1", images.full_sr)
        last = estimate_depth(
            runtime, source, fg2_part, smooth_bottom=False, previous=full.views, changed=fg1, model=model
        )
        distance = match_scale(full.distance, last.distance, fg2 & ~fg1)
        layers.append(_foreground("fg2", source, distance, fg2, compression))
    fg_depths = [(layer.distance, layer.keep) for layer in layers if layer.keep is not None]
    background_image = images.removed_sr.get("fg2", images.removed_sr.get("fg1", images.full_sr))
    background_mask = ~sky_dilated
    if foreground is None:
        background = full.distance
    else:
        background_part.update("depth", 0.0)
        changed = fg2 if (fg1 is not None and fg2 is not None) else foreground
        estimate = estimate_depth(
            runtime, background_image, background_part, previous=last.views, changed=changed, model=model
        )
        agree = ~_dilate(foreground, FG_DILATE) & ~sky_dilated
        background = match_scale(full.distance, estimate.distance, agree)
    finish.update("depth", 0.0, "compressing the background" if compression else "layers in order")
    if compression:
        background = compress_background(background, background_mask, indoor=indoor_policy, foreground=fg_depths)
    layers.append(Layer("background", background_image, background, background_mask if sky is not None else None))
    if sky is not None and images.sky_sr is not None:
        farthest = max(
            [float(d[m].max()) for d, m in [*fg_depths, (background, background_mask)] if m.any()], default=0.0
        )
        radius = SKY_MARGIN * farthest if farthest > 0 else SKY_DEFAULT_DISTANCE
        distance = np.full(images.sky_sr.shape[:2], radius, np.float32)
        layers.append(Layer("sky", images.sky_sr, distance, None, max_width=SKY_MAX_WIDTH, fill_gaps=False))
    progress.update("depth", 1.0, "done")
    return layers, full
