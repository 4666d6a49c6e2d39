"""Depth, layer composition and meshing decisions that follow HunyuanWorld-1.0 (d17a023) and MoGe, one
test per parity row of docs/reference-parity.md."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import cv2
import numpy as np
import pytest

from tests.helpers import box_room, gradient_rgb
from worldgen.geometry.views import ViewCameras, sample_views
from worldgen.progress import Progress
from worldgen.stages import compose
from worldgen.stages.depth import PanoramaDepth, ViewDepths, depth_input, fill_unmeasured, views_to_predict
from worldgen.stages.layers import LayeredImages
from worldgen.stages.segmentation import Instance


def test_depth_input_matches_the_references_resize_at_its_size() -> None:
    """The reference's resize runs bilinear (its INTER_AREA lands in `dst`); at 3840 → 1920 we give the same bytes."""
    panorama = np.random.default_rng(0).integers(0, 256, (1920, 3840, 3), dtype=np.uint8)
    expected = cv2.resize(panorama, (1920, 960), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(depth_input(panorama), expected)
    small = panorama[:960, :1920]
    assert depth_input(small) is small


def test_unmeasured_pixels_get_the_quantile_of_the_whole_map() -> None:
    fused = np.linspace(1, 100, 64 * 128, dtype=np.float32).reshape(64, 128)
    covered = np.ones_like(fused, bool)
    covered[-8:] = False  # the highest values are unmeasured (sky)
    filled = fill_unmeasured(fused, covered)
    assert np.array_equal(filled[covered], fused[covered])
    assert np.allclose(filled[~covered], np.quantile(fused, 0.999))
    assert not np.isclose(np.quantile(fused, 0.999), np.quantile(fused[covered], 0.999))


def test_a_view_that_only_grazes_the_changed_region_is_reused() -> None:
    """The reference samples the 0/1 mask bilinearly into uint8 views: a view counts only where the
    interpolated mask rounds to 1, so a one-pixel change re-predicts fewer views than 'any overlap'."""
    cameras = ViewCameras.icosahedron()
    height, width = 1920, 3840
    for row, col in [(700, 1000), (701, 1001), (703, 1003), (960, 1500), (1200, 2900)]:
        changed = np.zeros((height, width), bool)
        changed[row, col] = True
        weights = sample_views(changed.astype(np.float32), cameras).reshape(len(cameras), -1).max(axis=1)
        if ((weights > 0) & (weights < 0.4)).any():
            break
    else:
        pytest.fail("no test pixel with a grazing view")
    chosen = set(views_to_predict(changed, cameras))
    assert chosen <= {i for i in range(len(cameras)) if weights[i] > 0}
    assert {i for i in range(len(cameras)) if weights[i] > 0.6} <= chosen
    assert {i for i in range(len(cameras)) if 0 < weights[i] < 0.4}.isdisjoint(chosen)
    block = np.zeros((height, width), bool)
    block[row - 2 : row + 3, col - 2 : col + 3] = True
    assert set(views_to_predict(block, cameras)) == {i for i in range(len(cameras)) if weights[i] > 0}


def test_scale_matching_uses_the_lower_median() -> None:
    """torch.median (the reference's) returns the lower of the two middle values."""
    reference = np.array([1.0, 2.0, 3.0, 5.0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9], np.float32)
    other = np.array([2.0, 4.0, 8.0, 9.0, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20], np.float32)
    mask = np.ones(reference.shape, bool)
    # Values under each map's 30th percentile: [1, 2, 3, 5] and [2, 4, 8, 9] → lower medians 2 and 4.
    assert np.allclose(compose.match_scale(reference, other, mask), other * 0.5)


class _FakeDepth:
    """Stands in for MoGe: records each estimate_depth call and returns a known map per image."""

    def __init__(self, height: int, width: int) -> None:
        self.calls: list[dict[str, Any]] = []
        self.base = box_room(height, width)

    def __call__(self, runtime: Any, image: np.ndarray, progress: Progress, **kwargs: Any) -> PanoramaDepth:
        self.calls.append({"image": image, **kwargs})
        scale = 1.0 + 0.5 * len(self.calls)  # each estimate has its own scale, as MoGe's do
        views = ViewDepths(np.full((12, 4, 4), len(self.calls), np.float32), np.ones((12, 4, 4), bool))
        return PanoramaDepth(self.base * scale, np.ones(self.base.shape, bool), views)


def _images(height: int, width: int, fg1: bool, fg2: bool, sky: bool) -> LayeredImages:
    rgb = gradient_rgb(height, width)
    images = LayeredImages(full=rgb, full_sr=rgb)

    def instance(rows: slice, cols: slice) -> Instance:
        mask = np.zeros((height, width), bool)
        mask[rows, cols] = True
        return Instance("thing", np.zeros(4, np.float32), 0.9, mask)

    if fg1:
        images.instances["fg1"] = [instance(slice(40, 70), slice(30, 60))]
        images.removed_sr["fg1"] = rgb // 2
    if fg2:
        images.instances["fg2"] = [instance(slice(50, 80), slice(100, 140))]
        images.removed_sr["fg2"] = rgb // 3
    if sky:
        images.sky = np.zeros((height, width), bool)
        images.sky[:20] = True
        images.sky_sr = rgb // 4
    return images


def _compose(monkeypatch: pytest.MonkeyPatch, images: LayeredImages, indoor: bool = False):
    fake = _FakeDepth(*images.full_sr.shape[:2])
    monkeypatch.setattr(compose, "estimate_depth", fake)
    monkeypatch.setattr(compose, "hold_moge", lambda runtime: nullcontext(None))
    policies: list[bool] = []
    real = compose.compress_background

    def record(depth: np.ndarray, mask: np.ndarray, indoor: bool, foreground: Any = ()) -> np.ndarray:
        policies.append(indoor)
        return real(depth, mask, indoor=indoor, foreground=foreground)

    monkeypatch.setattr(compose, "compress_background", record)
    layers, full = compose.compose_layers(None, images, indoor=indoor, compression=True, progress=Progress())  # type: ignore[arg-type]
    return layers, full, fake, policies


def test_fg2_alone_takes_the_full_panoramas_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    """With fg2 but no fg1 the reference meshes fg2 from the full image's depth (no second estimate),
    and the background re-predicts the views fg2 touches, starting from the full image's views."""
    images = _images(96, 192, fg1=False, fg2=True, sky=False)
    layers, full, fake, _ = _compose(monkeypatch, images)
    assert [layer.name for layer in layers] == ["fg2", "background"]
    assert len(fake.calls) == 2  # the full panorama, then the background
    assert np.array_equal(layers[0].distance, full.distance) and layers[0].rgb is images.full_sr
    background_call = fake.calls[1]
    assert background_call["image"] is images.removed_sr["fg2"]
    assert background_call["previous"] is full.views
    assert np.array_equal(background_call["changed"], images.mask("fg2"))


def test_fg1_and_fg2_follow_the_reference_cascade(monkeypatch: pytest.MonkeyPatch) -> None:
    images = _images(96, 192, fg1=True, fg2=True, sky=True)
    layers, full, fake, _ = _compose(monkeypatch, images)
    assert [layer.name for layer in layers] == ["fg1", "fg2", "background", "sky"]
    assert len(fake.calls) == 3
    fg2_call, background_call = fake.calls[1], fake.calls[2]
    assert fg2_call["image"] is images.removed_sr["fg1"] and fg2_call["smooth_bottom"] is False
    assert fg2_call["previous"] is full.views and np.array_equal(fg2_call["changed"], images.mask("fg1"))
    assert background_call["image"] is images.removed_sr["fg2"]
    assert np.array_equal(background_call["changed"], images.mask("fg2"))
    # every later estimate is brought back to the full panorama's scale (the fake's scales differ);
    # compression only moves values beyond its knee (0.9 × max depth ≥ 5.4)
    near = full.distance < 5
    assert np.allclose(layers[2].distance[near], full.distance[near], rtol=1e-5)


@pytest.mark.parametrize(
    ("indoor", "sky", "expected"), [(False, True, False), (False, False, True), (True, False, True)]
)
def test_background_policy_follows_the_sky_image(
    monkeypatch: pytest.MonkeyPatch, indoor: bool, sky: bool, expected: bool
) -> None:
    """The reference picks its compression settings by whether a sky image exists ('indoor' if none),
    so an outdoor scene where no sky was found is compressed with the indoor settings."""
    _, _, _, policies = _compose(monkeypatch, _images(96, 192, fg1=True, fg2=False, sky=sky), indoor=indoor)
    assert policies == [expected]
