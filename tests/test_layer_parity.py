"""Facts of the reference's layer decomposition (HunyuanWorld-1.0 @ d17a023) that our stages keep:
mask downsizing, dilation of overlapping instances, ZIM's outputs read by position, unpadding,
the layer files, the sky mask file, detection phrases and the inpainting passes
(docs/reference-parity.md)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from tests.helpers import gradient_rgb
from worldgen.models.grounding_dino import GroundingDino
from worldgen.models.runtime import ModelRuntime
from worldgen.models.zim import ZimPredictor, box_attention, frame_boxes
from worldgen.progress import Progress
from worldgen.stages import segmentation as seg
from worldgen.stages.inpaint import INPAINT_SEED, scene_pass, sky_pass
from worldgen.stages.layers import LayerRequest, decompose, removed_labels


def blobs(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A mask with rectangles, a disc and ragged edges, like a dilated instance map."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, np.uint8)
    for _ in range(6):
        y, x = rng.integers(0, shape[0] - 60), rng.integers(0, shape[1] - 60)
        mask[y : y + rng.integers(7, 60), x : x + rng.integers(7, 60)] = 1
    cv2.circle(mask, (shape[1] // 2, shape[0] // 2), shape[0] // 5, 1, -1)
    mask |= (rng.random(shape) < 0.02).astype(np.uint8)  # odd single pixels too
    return mask.astype(bool)


def test_mask_downsizing_is_the_references_linear_resize_then_binarised() -> None:
    """cv2.resize(m, (w, h), Image.BILINEAR) puts the 2 into `dst`: INTER_LINEAR on uint8 0/1, which
    for an exact halving is the rounded 2×2 mean; the Fill pipeline then binarises at 0.5. So a
    pixel is painted when at least 2 of its 4 source pixels are."""
    for seed in range(3):
        mask = blobs((240, 480), seed)
        block_sum = mask.reshape(120, 2, 240, 2).sum(axis=(1, 3))
        small = seg.to_panorama_size(mask, 120, 240)
        assert small.dtype == np.bool_
        assert np.array_equal(small, block_sum >= 2)
    two = np.zeros((4, 4), bool)
    two[0, 0:2] = True  # 2 of 4: painted
    two[2, 2] = True  # 1 of 4: not painted
    assert seg.to_panorama_size(two, 2, 2).tolist() == [[True, False], [False, False]]


def instance(label: str, mask: np.ndarray) -> seg.Instance:
    ys, xs = np.nonzero(mask)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32)
    return seg.Instance(label, box, 1.0, mask)


def test_overlapping_instances_dilate_their_label_regions() -> None:
    """The reference dilates `label_map == k` (the later instance owns the overlap) with a kernel
    sized from the instance's full area."""
    shape = (600, 1000)
    big = np.zeros(shape, bool)
    big[100:500, 200:500] = True  # 120000 px: kernel 120 × 135
    small = np.zeros(shape, bool)
    small[150:450, 440:500] = True  # 18000 px, inside big along its right edge: kernel 112 × 127
    instances = [instance("big", big), instance("small", small)]
    mask = seg.inpaint_mask(instances, shape)

    labels = seg.label_map(instances, shape)
    expected = np.zeros(shape, bool)
    for index, size in ((1, (120, 135)), (2, (112, 127))):
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, size)
        expected |= cv2.dilate((labels == index).astype(np.uint8), kernel) > 0
    expected[:, :20] = expected[:, -20:] = True
    assert np.array_equal(mask, expected)
    # Where the small instance owns big's edge, only its own kernel reaches out: 56 px right of
    # column 499 (dilating the whole big instance would reach 60 px) ...
    assert mask[300, 555] and not mask[300, 556]
    assert mask[120, 559] and not mask[120, 560]  # ... while above it the big kernel still does


def renamed_copy(source: Path, target: Path, names: dict[str, str]) -> None:
    """The ONNX file with its graph outputs renamed (and every node edge that carries them)."""
    model = onnx.load(str(source))
    for node in model.graph.node:
        node.input[:] = [names.get(name, name) for name in node.input]
        node.output[:] = [names.get(name, name) for name in node.output]
    for output in model.graph.output:
        output.name = names.get(output.name, output.name)
    onnx.save(model, str(target))


def test_zim_reads_its_outputs_by_position(tiny_models: Path, tmp_path: Path) -> None:
    """The published files' output names are not documented; the reference unpacks by position."""
    folder = tiny_models / "naver-iv/zim-anything-vitl/zim_vit_l_2092"
    encoder_names = {"image_embeddings": "e0", "feat_D0": "e1", "feat_D1": "e2", "feat_D2": "e3"}
    renamed_copy(folder / "encoder.onnx", tmp_path / "encoder.onnx", encoder_names)
    renamed_copy(folder / "decoder.onnx", tmp_path / "decoder.onnx", {"masks": "m", "iou_predictions": "q"})
    assert [o.name for o in onnx.load(str(tmp_path / "decoder.onnx")).graph.output] == ["m", "q"]
    image = np.random.default_rng(0).integers(0, 255, (300, 600, 3), np.uint8)
    boxes = np.array([[100, 50, 300, 200], [400, 100, 500, 250]], np.float32)
    masks = []
    for path in (folder, tmp_path):
        zim = ZimPredictor(path, torch.device("cpu"))
        zim.set_image(image)
        masks.append(zim.box_masks(boxes))
    assert masks[0].any() and np.array_equal(masks[0], masks[1])


def test_zim_box_prompt_arithmetic() -> None:
    """Boxes scale to the 1024 frame in float64, then float32 (ResizeLongestSide.apply_boxes); the
    attention cells come from int() truncation, so a corner in (-16, 0) still opens cell 0."""
    xs = np.arange(0, 5760, 0.25, dtype=np.float32)
    boxes = np.stack([xs, xs / 3, xs, xs / 3], axis=1)
    scaled = frame_boxes(boxes, (1920, 5760), (341, 1024))
    reference = (boxes.astype(np.float64) * np.array([1024 / 5760, 341 / 1920] * 2)).astype(np.float32)
    assert scaled.dtype == np.float32 and np.array_equal(scaled, reference)
    assert (xs * np.float32(1024 / 5760) != reference[:, 0]).any()  # float32 arithmetic would differ
    attention = box_attention(np.array([[-30, -30, -5, -5]], np.float32))
    assert attention[0, 0, 0] == 1 and attention.sum() == 1


def test_unpad_keeps_one_copy_per_box() -> None:
    """A box that starts in the padding takes its mask from the padding and the first half; any
    other box from the unpadded frame. Box x0 moves right by the width, x1 only if negative too."""
    width, pad, height = 400, 200, 20
    masks = np.zeros((3, height, width + pad), bool)
    masks[0, :, 150:260] = True  # across the seam
    masks[0, :, 520:540] = True  # the real copy of columns 320..339: dropped for this box
    masks[1, :, 300:350] = True  # an ordinary box ...
    masks[1, :, 10:20] = True  # ... with a speck in the padding: dropped
    masks[2, :, 20:60] = True  # wholly inside the padding
    boxes = np.array([[150, 0, 260, 20], [300, 0, 350, 20], [20, 0, 60, 20]], np.float32)
    unpadded_boxes, out = seg.unpad(boxes, masks, pad)
    assert unpadded_boxes.dtype == np.float32
    assert unpadded_boxes.tolist() == [[350, 0, 60, 20], [100, 0, 150, 20], [220, 0, 260, 20]]
    expected = np.zeros((3, height, width), bool)
    expected[0, :, 350:400] = expected[0, :, 0:60] = True
    expected[1, :, 100:150] = True
    expected[2, :, 220:260] = True
    assert np.array_equal(out, expected)


def test_layer_files_are_written_like_the_references(tmp_path: Path) -> None:
    mask = np.zeros((40, 80), bool)
    mask[5:20, 10:30] = True
    box = np.array([10.123456, 5.5, 29.987654, 19.25], np.float32)
    item = seg.Instance("a tree", box, float(np.float32(0.41234567)), mask)
    written = seg.write_layer_files(tmp_path, "fg1", [item], mask.shape)
    text = (tmp_path / "fg1.json").read_text()
    assert text == json.dumps(
        {"bboxes": [{"label": "a tree", "bbox": [float(v) for v in box], "score": item.score, "area": 300}]},
        indent=4,
    )
    assert json.loads(text)["bboxes"][0]["bbox"][0] == float(np.float32(10.123456))  # float32 values, unrounded
    labels = np.asarray(Image.open(tmp_path / "fg1_mask.png"))
    assert labels.dtype == np.uint8 and (labels == 1).sum() == 300
    assert written == [tmp_path / "fg1_mask.png", tmp_path / "fg1.json"]
    assert seg.write_layer_files(tmp_path, "fg2", [], mask.shape) == []
    assert not (tmp_path / "fg2.json").exists() and not (tmp_path / "fg2_mask.png").exists()


def test_grounding_dino_keeps_the_detected_phrases(tiny_models: Path) -> None:
    """The reference's JSON label is the phrase transformers decodes, not a requested label."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    folder = tiny_models / "IDEA-Research/grounding-dino-tiny"
    image = np.random.default_rng(1).integers(0, 255, (96, 192, 3), np.uint8)
    found = GroundingDino(folder, torch.device("cpu")).detect(image, ["tree", "red car"])
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForZeroShotObjectDetection.from_pretrained(folder).eval()
    inputs = processor(images=Image.fromarray(image), text="tree. red car.", return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    expected = processor.post_process_grounded_object_detection(
        outputs, inputs.input_ids, threshold=0.3, text_threshold=0.3, target_sizes=[(96, 192)]
    )[0]
    assert len(found.labels) > 0 and found.labels == list(expected["text_labels"])
    assert found.boxes.dtype == np.float32 and np.array_equal(found.boxes, expected["boxes"].numpy())


def test_inpainting_passes() -> None:
    outdoor = scene_pass("fg1", "outdoor", ["tree", "stone lamp"])
    assert (outdoor.prompt, outdoor.adapter, outdoor.guidance, outdoor.true_cfg) == ("", "scene", 30.0, 5.0)
    assert outdoor.negative == (
        "object, chair, tree, plant, flower, grass, stone, rock,building, hill, house, tower, light, lamp, "
        "low-resolution, blur, mosaic, people, tree, stone lamp"
    )
    indoor = scene_pass("fg2", "indoor", [])
    assert indoor.negative == (
        "object, table, chair, seat, shelf, sofa, bed, bath, sink,ceramic, wood, plant, tree, light, lamp, "
        "candle, television, electronics,oven, fire, low-resolution, blur, mosaic, people"
    )
    sky = sky_pass()
    assert (sky.adapter, sky.guidance, sky.true_cfg) == ("sky", 20.0, 5.0)
    assert sky.prompt == "sky-coverage, whole sky image, ultra-high definition stratosphere"
    assert sky.negative == (
        "object, text, defocus, pure color, low-res, blur, pixelation, foggy, noise, mosaic, artifacts, "
        "low-contrast, low-quality, blurry, tree, grass, plant, ground, land, mountain, building, lake, river, sea, "
        "ocean"
    )
    assert INPAINT_SEED == 25 and LayerRequest("outdoor", {}, {}).seed == 25


def test_removed_labels_name_what_a_pass_removes() -> None:
    request = LayerRequest(
        "outdoor",
        {"fg1": ["tree", "car"], "fg2": []},
        {"fg2": [{"label": "bench", "box": [0, 0, 9, 9]}, {"label": "bench", "box": [20, 0, 29, 9]}]},
    )
    assert removed_labels(request, "fg1") == ["tree", "car"]
    assert removed_labels(request, "fg2") == ["bench"]  # explicit boxes: their labels, once each


@pytest.fixture(scope="module")
def layered(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("layered")
    runtime = ModelRuntime.create(tiny_models, device="cpu", precision="fp32")
    request = LayerRequest(
        "outdoor",
        {},
        {
            "fg1": [{"label": "tree", "box": [40, 30, 110, 100]}],
            "fg2": [{"label": "bench", "box": [220, 40, 290, 110]}],  # across the seam (width 256)
        },
        steps=1,
    )
    return decompose(runtime, gradient_rgb(128, 256), request, out, Progress()), out


def test_layer_outputs_are_the_references_files(layered) -> None:
    result, out = layered
    for name, image in (
        ("full_image_sr", result.full_sr),
        ("remove_fg1_image_sr", result.removed_sr["fg1"]),
        ("remove_fg2_image_sr", result.removed_sr["fg2"]),
        ("sky_image_sr", result.sky_sr),
    ):
        assert np.array_equal(np.asarray(Image.open(out / f"{name}.png")), image), name
    fg2 = json.loads((out / "fg2.json").read_text())["bboxes"]
    assert fg2[0]["bbox"][0] > fg2[0]["bbox"][2]  # across the seam: x0 moved right by the width, x1 not
    labels = np.asarray(Image.open(out / "fg2_mask.png"))
    assert labels[100, :10].any() and labels[100, -10:].any()


def test_sky_mask_file_is_white_where_there_is_no_sky(layered) -> None:
    """The reference's sky_mask.png marks the ground (the region painted over), as its composer reads it."""
    result, out = layered
    assert result.sky is not None and result.sky.any() and not result.sky.all()
    written = np.asarray(Image.open(out / "sky_mask.png"))
    assert np.array_equal(written == 255, ~result.sky) and set(np.unique(written)) <= {0, 255}


def test_an_empty_sky_mask_still_paints_a_sky(
    tiny_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sky boxes whose mattes are empty: the reference paints the whole panorama as sky."""
    monkeypatch.setattr(ZimPredictor, "box_masks", lambda self, boxes: np.zeros((len(boxes), *self.size), bool))
    runtime = ModelRuntime.create(tiny_models, device="cpu", precision="fp32")
    result = decompose(runtime, gradient_rgb(64, 128), LayerRequest("outdoor", {}, {}, steps=1), tmp_path, Progress())
    assert result.sky is not None and not result.sky.any() and result.sky_sr is not None
    assert (np.asarray(Image.open(tmp_path / "sky_mask.png")) == 255).all()
    assert (tmp_path / "sky_image.png").exists() and (tmp_path / "sky_image_sr.png").exists()


def test_removed_labels_feed_the_negative_prompt() -> None:
    request = LayerRequest("indoor", {}, {"fg1": [{"label": "lamp", "box": [0, 0, 9, 9]}]})
    assert scene_pass("fg1", "indoor", removed_labels(request, "fg1")).negative.endswith("people, lamp")
