"""Finding the objects of a layer and the sky: Grounding DINO boxes (or the user's boxes) → ZIM
mattes at the super-resolved size → the post-processing of the method (§4 steps 2 and 5).

Detection runs on the original panorama and ZIM on the ×2 image, both wrap-padded on the left by
half their width so objects across the seam are seen whole; masks are then unpadded by folding
the padding back onto the right edge (a box that starts in the padding moves right by the width).
"""

from __future__ import annotations

import json
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


@dataclass
class Instance:
    label: str
    box: np.ndarray
    """x0, y0, x1, y1 in super-resolved pixels; x1 may exceed the width for a box across the seam."""
    score: float
    mask: np.ndarray = field(repr=False)
    """(H, W) bool at the super-resolved size."""

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def as_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "bbox": [round(float(v), 2) for v in self.box],
            "score": round(self.score, 4),
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


def unpad(boxes: np.ndarray, masks: np.ndarray, pad: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and masks from the left-padded frame back to the panorama (wrap folded back in)."""
    boxes = boxes.astype(np.float64).copy()
    boxes[:, [0, 2]] -= pad
    wraps = boxes[:, 0] < 0
    boxes[wraps, 0] += width
    boxes[wraps & (boxes[:, 2] < 0), 2] += width
    boxes[wraps & (boxes[:, 2] < boxes[:, 0]), 2] += width
    out = masks[:, :, pad:].copy()
    out[:, :, width - pad :] |= masks[:, :, :pad]
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
    labels: list[str], scores: np.ndarray, boxes: np.ndarray, masks: np.ndarray, pad: int, width: int
) -> list[Instance]:
    """Small blobs, single component, unpad, NMS, size filter (method §4 step 2)."""
    cleaned = np.stack([remove_small_blobs(m, MIN_BLOB) for m in masks]) if len(masks) else masks
    single = [i for i in range(len(cleaned)) if component_count(cleaned[i]) <= 1]
    boxes, unpadded = unpad(boxes[single], cleaned[single], pad, width)
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
    scale ×2, keep the 100 largest."""
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
    boxes = np.array([o["box"] for o in objects], np.float64).reshape(-1, 4) * SCALE
    across = boxes[:, 2] > width * SCALE
    boxes[across, 0] -= width * SCALE
    boxes[across, 2] -= width * SCALE
    boxes[:, [0, 2]] += pad
    return boxes


def sky_mask(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Union of the sky mattes, holes filled, floaters removed (method §4 step 5); True = sky."""
    union = masks.any(axis=0) if len(masks) else np.zeros(shape, bool)
    filled = fill_contours(union)
    ground = remove_small_blobs(~filled, SKY_MIN_FLOATER)
    return ~fill_contours(ground)


def fill_contours(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    canvas = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(canvas, contours, -1, 1, thickness=-1)
    return canvas > 0


def inpaint_mask(instances: list[Instance], shape: tuple[int, int], edge: int = 20) -> np.ndarray:
    """Where to paint an object layer away: each instance dilated by a rectangle that grows with
    its size (80·s·1.5 × 90·s·1.5 px, s = √min(area/20000, 1)), plus the 20 edge columns."""
    mask = np.zeros(shape, bool)
    for instance in instances:
        s = np.sqrt(min(instance.area / 20000, 1.0))
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (int(int(80 * s) * 1.5), int(int(90 * s) * 1.5)))
        mask |= cv2.dilate(instance.mask.astype(np.uint8), kernel) > 0
    mask[:, :edge] = True
    mask[:, -edge:] = True
    return mask


def sky_inpaint_mask(sky: np.ndarray, edge: int = 20) -> np.ndarray:
    """Everything that is not sky, dilated 120 × 120, plus the 20 edge columns."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (120, 120))
    mask = cv2.dilate((~sky).astype(np.uint8), kernel) > 0
    mask[:, :edge] = True
    mask[:, -edge:] = True
    return mask


def to_panorama_size(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A super-resolved mask at the panorama's size (bicubic like the reference, then ≥ 0.5)."""
    resized = cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    return resized >= 0.5


def write_layer_files(out_dir: Path, name: str, instances: list[Instance], shape: tuple[int, int]) -> list[Path]:
    from PIL import Image

    mask_path, json_path = out_dir / f"{name}_mask.png", out_dir / f"{name}.json"
    Image.fromarray(label_map(instances, shape)).save(mask_path)
    json_path.write_text(json.dumps({"bboxes": [i.as_json() for i in instances]}, indent=2) + "\n")
    return [mask_path, json_path]
