"""Detection, matting and the segmentation post-processing, on synthetic masks and tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from worldgen.models.grounding_dino import GroundingDino
from worldgen.models.zim import ZimPredictor, box_attention
from worldgen.stages import segmentation as seg


def test_unpad_folds_a_seam_crossing_blob_back() -> None:
    width, pad, height = 400, 200, 50
    padded = np.zeros((1, height, width + pad), bool)
    padded[0, 10:30, 150:260] = True  # columns 150..199 are the wrap of image columns 350..399
    boxes = np.array([[150.0, 10, 260, 30]])
    unpadded_boxes, masks = seg.unpad(boxes, padded, pad)
    assert masks.shape == (1, height, width)
    expected = np.zeros((height, width), bool)
    expected[10:30, 350:400] = True
    expected[10:30, 0:60] = True
    assert np.array_equal(masks[0], expected)
    assert unpadded_boxes[0].tolist() == [350.0, 10.0, 60.0, 30.0]  # across the seam: x0 > x1, as the reference


def test_small_blobs_components_nms_and_size() -> None:
    shape = (300, 600)
    big = np.zeros(shape, bool)
    big[50:200, 50:200] = True
    big[10, 500] = True  # a speck: removed as a small blob
    inside = np.zeros(shape, bool)
    inside[60:190, 60:190] = True  # mostly inside `big`: suppressed by mask NMS
    two_parts = np.zeros(shape, bool)
    two_parts[0:100, 300:400] = True
    two_parts[200:300, 300:400] = True  # two components: dropped
    small = np.zeros(shape, bool)
    small[250:260, 500:560] = True  # 600 px after cleaning: below the size filter
    masks = np.stack([big, inside, two_parts, small])
    boxes = np.array([[50, 50, 200, 200], [60, 60, 190, 190], [300, 0, 400, 300], [500, 250, 560, 260]], float)
    kept = seg.postprocess(["a", "b", "c", "d"], np.ones(4), boxes, masks, pad=0)
    assert [i.label for i in kept] == ["a"]
    assert kept[0].area == 150 * 150 and not kept[0].mask[10, 500]
    assert seg.remove_small_blobs(big, seg.MIN_BLOB)[10, 500] == 0
    labels = seg.label_map(kept, shape)
    assert labels.max() == 1 and (labels == 1).sum() == 150 * 150


def test_detection_selection() -> None:
    boxes = np.array([[10, 0, 50, 40], [30, 0, 130, 90], [40, 0, 60, 10]], float)
    scores = np.array([0.9, 0.36, 0.34])
    kept_boxes, _, labels = seg.select_detections(boxes, scores, ["x", "y", "z"], outdoor=True)
    assert labels == ["y"] and kept_boxes.tolist() == [[60, 0, 260, 180]]  # scaled ×2
    _, _, indoor = seg.select_detections(boxes, scores, ["x", "y", "z"], outdoor=False)
    assert indoor == ["y", "z"]  # by area, largest first; x starts left of 20 px


def test_explicit_boxes_across_the_seam() -> None:
    boxes = seg.explicit_boxes([{"label": "a", "box": [10, 5, 60, 40]}, {"label": "b", "box": [180, 5, 230, 40]}],
                               width=200, pad=200)  # fmt: skip
    assert boxes.tolist() == [[220, 10, 320, 80], [160, 10, 260, 80]]  # the second starts in the padding


def test_sky_mask_fills_holes_and_drops_floaters() -> None:
    shape = (200, 400)
    upper = np.zeros(shape, bool)
    upper[:100] = True
    upper[40:45, 100:105] = False  # a hole in the sky (a bird): filled
    floater = np.zeros(shape, bool)
    floater[150:155, 10:15] = True  # a speck of "sky" on the ground: removed
    sky = seg.sky_mask(np.stack([upper, floater]), shape)
    assert sky[:100].all() and not sky[100:].any()


def test_inpaint_masks() -> None:
    instance = seg.Instance("tree", np.array([100, 100, 140, 160]), 1.0, np.zeros((400, 800), bool))
    instance.mask[100:160, 100:140] = True
    mask = seg.inpaint_mask([instance], (400, 800))
    assert mask[:, :20].all() and mask[:, -20:].all()
    assert mask[130, 85] and not mask[130, 60] and not mask[130, 300]  # a 40 × 46 px rectangle for 2400 px
    sky = np.zeros((400, 800), bool)
    sky[:150] = True
    around = seg.sky_inpaint_mask(sky)
    assert around[200].all() and around[100, 400] and not around[50, 400]
    small = seg.to_panorama_size(mask, 200, 400)
    assert small.shape == (200, 400) and small[65, 60]


def test_zim_twin_box_prompts(tiny_models: Path) -> None:
    attention = box_attention(np.array([[0, 0, 31, 15], [100, 200, 1023, 1023]], np.float32))
    assert attention.shape == (2, 64, 64)
    assert attention[0].sum() == 2 * 1 and attention[0, 0, :2].all()  # cells x 0..1, y 0
    assert attention[1, 12:, 6:].all() and attention[1].sum() == 52 * 58
    zim = ZimPredictor(tiny_models / "naver-iv/zim-anything-vitl/zim_vit_l_2092", torch.device("cpu"))
    image = np.random.default_rng(0).integers(0, 255, (300, 600, 3), np.uint8)
    zim.set_image(image)
    masks = zim.box_masks(np.array([[100, 50, 300, 200], [400, 100, 500, 250]]))
    assert masks.shape == (2, 300, 600)
    assert masks[0, 120, 200] and not masks[0, 120, 450] and masks[1, 180, 450]


def test_grounding_dino_twin_detects(tiny_models: Path) -> None:
    detector = GroundingDino(tiny_models / "IDEA-Research/grounding-dino-tiny", torch.device("cpu"))
    image = np.random.default_rng(1).integers(0, 255, (96, 192, 3), np.uint8)
    found = detector.detect(image, ["tree", "sky"])
    assert found.boxes.shape[1] == 4 and len(found.boxes) == len(found.scores) == len(found.labels) > 0
    words = {w for label in found.labels for w in label.replace(".", " ").split()}
    assert words <= {"tree", "sky", "[SEP]"}  # the decoded phrases, as the reference writes them
    assert (found.boxes[:, 2] <= 192 + 1e-3).all() and (found.scores >= 0.3).all()
