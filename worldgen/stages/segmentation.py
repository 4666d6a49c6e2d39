"""Finding the objects of a layer and the sky: Grounding DINO boxes (or the user's boxes) → ZIM
mattes at the super-resolved size → the post-processing of the method (§4 steps 2 and 5).

Detection runs on the original panorama and ZIM on the ×2 image, both wrap-padded on the left by
half their width so objects across the seam are seen whole; masks are then unpadded as the
reference does: a box that starts in the padding takes its mask from the padding and the first
half (and moves right by the width), any other box from the unpadded frame.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

SCALE = 2
OUTDOOR_MIN_SCORE = 0.35
MIN_LEFT = 20
MAX_BOXES = 100
MIN_BLOB = 500 * SCALE**2
MIN_INSTANCE = 3000 * SCALE**2
NMS_OVERLAP = 0.5
SKY_MIN_FLOATER = 1000 * SCALE**2
DILATION_BASE = 80
"""Kernel width base in pixels (height base + 10), scaled by √min(area / DILATION_AREA, 1)·1.5."""
DILATION_AREA = 20000
DILATION_RATIO = 1.5
SKY_DILATION = 120
EDGE_COLUMNS = 20


@dataclass
class Instance:
    label: str
    box: np.ndarray
    """x0, y0, x1, y1 (float32) in super-resolved pixels; across the seam x0 > x1, as the reference
    writes it (x0 moved right by the width, x1 left where it is)."""
    score: float
    mask: np.ndarray = field(repr=False)
    """(H, W) bool at the super-resolved size."""

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def as_json(self) -> dict[str, object]:
        """The reference's entry: float32 values unrounded, area of the whole matte."""
        return {
            "label": self.label,
            "bbox": [float(v) for v in self.box],
            "score": float(self.score),
            "area": self.area,
        }


def wrap_pad_left(image: np.ndarray, pad: int) -> np.ndarray:
    return np.concatenate([image[:, image.shape[1] - pad :], image], axis=1)


def remove_small_blobs(mask: np.ndarray, min_size: int) -> np.ndarray:
    """Drop 8-connected components smaller than `min_size` pixels."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels]


def component_count(mask: np.ndarray) -> int:
    return int(ndimage.label(mask, structure=np.ones((3, 3), bool))[1])


def unpad(boxes: np.ndarray, masks: np.ndarray, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and masks (K, H, W + pad) from the frame left-padded by `pad` = W/2 back to the
    panorama. Like the reference, each mask keeps ONE copy of the wrapped half: a box starting in
    the padding takes the padding (as columns W/2..W) and the first half, any other box the
    unpadded frame; box arithmetic in float32 as the reference's tensors."""
    boxes = boxes.astype(np.float32)
    boxes[:, [0, 2]] -= pad
    wraps = (boxes[:, 0] < 0) & (pad > 0)
    boxes[wraps, 0] += 2 * pad
    boxes[wraps & (boxes[:, 2] < 0), 2] += 2 * pad
    out = masks[:, :, pad:].copy()
    if wraps.any():
        folded = masks[wraps]
        out[wraps] = np.concatenate([folded[:, :, pad : 2 * pad], folded[:, :, :pad]], axis=2)
    return boxes, out


def mask_nms(instances: list[Instance], overlap: float = NMS_OVERLAP) -> list[Instance]:
    """Largest first; drop an instance whose intersection with a kept one exceeds `overlap` of
    the smaller of the two areas."""
    kept: list[Instance] = []
    for candidate in sorted(instances, key=lambda i: i.area, reverse=True):
        area = candidate.area
        if area == 0:
            continue
        if all((candidate.mask & other.mask).sum() <= overlap * min(area, other.area) for other in kept):
            kept.append(candidate)
    return kept


def postprocess(
    labels: list[str], scores: np.ndarray, boxes: np.ndarray, masks: np.ndarray, pad: int
) -> list[Instance]:
    """Small blobs, single component, unpad, NMS, size filter (method §4 step 2)."""
    cleaned = np.stack([remove_small_blobs(m, MIN_BLOB) for m in masks]) if len(masks) else masks
    single = [i for i in range(len(cleaned)) if component_count(cleaned[i]) <= 1]
    boxes, unpadded = unpad(boxes[single], cleaned[single], pad)
    instances = [Instance(labels[i], boxes[j], float(scores[i]), unpadded[j]) for j, i in enumerate(single)]
    return [i for i in mask_nms(instances) if i.area >= MIN_INSTANCE]


def label_map(instances: list[Instance], shape: tuple[int, int]) -> np.ndarray:
    """uint8 map: 0 background, k for the k-th instance (later instances win overlaps)."""
    result = np.zeros(shape, np.uint8)
    for index, instance in enumerate(instances, start=1):
        result[instance.mask] = index
    return result


def select_detections(
    boxes: np.ndarray, scores: np.ndarray, labels: list[str], outdoor: bool, min_left: int | None = MIN_LEFT
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Outdoor score > 0.35, drop boxes starting within `min_left` px of the (padded) left border,
    scale ×2, keep the 100 largest (largest first; float32 kept, as the reference's tensors)."""
    keep = np.ones(len(boxes), bool) if not outdoor else scores > OUTDOOR_MIN_SCORE
    if min_left is not None:
        keep &= boxes[:, 0] >= min_left
    boxes, scores = boxes[keep] * SCALE, scores[keep]
    labels = [label for label, k in zip(labels, keep, strict=True) if k]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(-areas, kind="stable")[:MAX_BOXES]
    return boxes[order], scores[order], [labels[i] for i in order]


def explicit_boxes(objects: list[dict], width: int, pad: int) -> np.ndarray:
    """User boxes in original panorama pixels (x1 up to 2·width across the seam) → the padded ×2 frame."""
    boxes = np.array([o["box"] for o in objects], np.float32).reshape(-1, 4) * SCALE
    across = boxes[:, 2] > width * SCALE
    boxes[across, 0] -= width * SCALE
    boxes[across, 2] -= width * SCALE
    boxes[:, [0, 2]] += pad
    return boxes


def sky_mask(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Union of the sky mattes, holes filled, floaters removed (method §4 step 5); True = sky."""
    union = np.zeros(shape, bool)
    if len(masks):
        np.any(masks, axis=0, out=union)
    filled = fill_contours(union)
    ground = remove_small_blobs(~filled, SKY_MIN_FLOATER)
    return ~fill_contours(ground)


def fill_contours(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    canvas = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(canvas, contours, -1, 1, thickness=-1)
    return canvas > 0


def dilation_kernel(area: int) -> tuple[int, int]:
    """(width, height) of an instance's rectangle: int(int(80·s)·1.5) × int(int(90·s)·1.5),
    s = √min(area / 20000, 1), so small objects get a tighter margin."""
    s = math.sqrt(min(area / DILATION_AREA, 1.0))
    return (
        int(int(DILATION_BASE * s) * DILATION_RATIO),
        int(int((DILATION_BASE + 10) * s) * DILATION_RATIO),
    )


def inpaint_mask(instances: list[Instance], shape: tuple[int, int], edge: int = EDGE_COLUMNS) -> np.ndarray:
    """Where to paint an object layer away, plus the `edge` columns at both ends. Like the
    reference, each instance's REGION of the label map (a later instance owns an overlap) is
    dilated, with the kernel sized from its whole matte's area (the JSON area)."""
    labels = label_map(instances, shape)
    mask = np.zeros(shape, bool)
    for index, instance in enumerate(instances, start=1):
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, dilation_kernel(instance.area))
        mask |= cv2.dilate((labels == index).astype(np.uint8), kernel) > 0
    mask[:, :edge] = True
    mask[:, -edge:] = True
    return mask


def sky_inpaint_mask(sky: np.ndarray, edge: int = EDGE_COLUMNS) -> np.ndarray:
    """Everything that is not sky, dilated 120 × 120, plus the `edge` columns at both ends."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (SKY_DILATION, SKY_DILATION))
    mask = cv2.dilate((~sky).astype(np.uint8), kernel) > 0
    mask[:, :edge] = True
    mask[:, -edge:] = True
    return mask


def to_panorama_size(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A super-resolved mask at the panorama's size, as the reference makes it: its
    `cv2.resize(m, (w, h), Image.BILINEAR)` passes the 2 as `dst`, so the resize is cv2's default
    INTER_LINEAR on uint8 0/1 (for an exact halving, the 2×2 mean rounded half up), and the Fill
    pipeline's mask processor (no resize at the same size) binarises 0/255 at 0.5: any 1 paints."""
    resized = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    return resized > 0


def write_layer_files(out_dir: Path, name: str, instances: list[Instance], shape: tuple[int, int]) -> list[Path]:
    """The instance-label PNG and the JSON, as the reference writes them (indent 4), and like it
    nothing at all when no instance is left."""
    from PIL import Image

    if not instances:
        return []
    mask_path, json_path = out_dir / f"{name}_mask.png", out_dir / f"{name}.json"
    Image.fromarray(label_map(instances, shape)).save(mask_path)
    json_path.write_text(json.dumps({"bboxes": [i.as_json() for i in instances]}, indent=4))
    return [mask_path, json_path]
