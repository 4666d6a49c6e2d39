"""The layered world on tiny models: SR, adapters, fg1/fg2/background/sky, memory discipline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from tests.helpers import gradient_rgb
from worldgen.models.flux.adapters import LoraAdapters
from worldgen.models.flux.lora import read_lora
from worldgen.models.flux.transformer import load_transformer
from worldgen.models.precision import resolve_precision
from worldgen.models.runtime import ModelRuntime
from worldgen.pipeline import WorldInputs, generate_world
from worldgen.progress import Progress
from worldgen.request import WorldRequest
from worldgen.stages.super_resolution import load_esrgan, upscale

BOXES = {
    "objects_fg1": [{"label": "tree", "box": [40, 30, 110, 100]}],
    "objects_fg2": [{"label": "bench", "box": [220, 40, 290, 110]}],  # crosses the seam (width 256)
}


class WatchedRuntime(ModelRuntime):
    """Records which models were resident whenever a model loads."""

    loaded_beside: list[tuple[str, list[str]]]

    def hold(self, key, kind, load):  # type: ignore[no-untyped-def, override]
        self.loaded_beside = getattr(self, "loaded_beside", [])
        self.loaded_beside.append((key, sorted(self.resident)))
        return super().hold(key, kind, load)


def _world(tiny_models: Path, tmp_path: Path, **fields: Any) -> tuple[dict, Path, ModelRuntime]:
    Image.fromarray(gradient_rgb(128, 256)).save(tmp_path / "pano", format="PNG")
    runtime = WatchedRuntime.create(tiny_models, device="cpu", precision="fp32")
    request = WorldRequest(panorama_upload_id="pano", seed=7, steps=2, formats=["glb", "ply"], **fields)
    out = tmp_path / "out"
    manifest = generate_world(request, runtime, out, Progress(), WorldInputs(tmp_path))
    return manifest, out, runtime


@pytest.fixture(scope="module")
def outdoor(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, ModelRuntime]:
    return _world(tiny_models, tmp_path_factory.mktemp("outdoor"), scene="outdoor", **BOXES)


def test_all_layers_are_produced(outdoor: tuple[dict, Path, ModelRuntime]) -> None:
    manifest, out, _ = outdoor
    assert [layer["name"] for layer in manifest["layers"]] == ["fg1", "fg2", "background", "sky"]
    names = {f["name"] for f in manifest["files"]}
    assert {
        "full_image_sr.png",
        "fg1_mask.png",
        "fg1.json",
        "fg2_mask.png",
        "fg2.json",
        "remove_fg1_image.png",
        "remove_fg2_image.png",
        "sky_mask.png",
        "sky_image.png",
        "world.glb",
        "world_preview.glb",
        *(f"mesh_layer{i}.ply" for i in range(4)),
    } <= names
    scene = trimesh.load(out / "world.glb")
    assert sorted(scene.graph.nodes_geometry) == ["background", "fg1", "fg2", "sky"]
    assert Image.open(out / "full_image_sr.png").size == (512, 256)
    fg1 = json.loads((out / "fg1.json").read_text())["bboxes"]
    assert [b["label"] for b in fg1] == ["tree"] and fg1[0]["bbox"] == [80.0, 60.0, 220.0, 200.0]
    fg2 = json.loads((out / "fg2.json").read_text())["bboxes"]
    assert fg2[0]["bbox"][0] > fg2[0]["bbox"][2]  # across the seam: x0 moved right by the width, x1 not
    labels = np.asarray(Image.open(out / "fg2_mask.png"))
    assert labels[100, :10].any() and labels[100, -10:].any()  # on both sides of the seam


def test_layer_geometry_is_ordered(outdoor: tuple[dict, Path, ModelRuntime]) -> None:
    _, out, _ = outdoor
    radii = {
        i: np.linalg.norm(trimesh.load(out / f"mesh_layer{i}.ply", process=False).vertices, axis=1) for i in range(4)
    }
    assert np.allclose(radii[3], radii[3][0])  # the sky is a sphere ...
    assert radii[3][0] >= max(radii[i].max() for i in range(3)) * 1.0  # ... around everything else


def test_memory_discipline(outdoor: tuple[dict, Path, ModelRuntime]) -> None:
    """Never two FLUX transformers or two T5 encoders; the Fill transformer loads once for all passes."""
    manifest, _, runtime = outdoor
    assert runtime.max_resident_per_kind["flux-transformer"] == 1
    assert runtime.max_resident_per_kind["t5"] == 1
    assert runtime.loads["flux-fill:transformer"] == 1
    assert runtime.loads["flux-fill:text_encoder_2"] == 1
    assert runtime.resident == {}
    assert "flux-fill:transformer" in manifest["peak_resident_models"]
    assert manifest["model_loads"]["moge:model"] == 1


def test_fg1_mattes_before_the_fill_transformer_loads(outdoor: tuple[dict, Path, ModelRuntime]) -> None:
    """The Fill transformer loads at the first pass: fg1's ZIM runs with nothing else resident (on
    a 24 GB card that decides whether it fits on the GPU); fg2's and the sky's run beside it."""
    _, _, runtime = outdoor
    assert isinstance(runtime, WatchedRuntime)
    zim = [beside for key, beside in runtime.loaded_beside if key == "zim:model"]
    assert zim[0] == []
    assert zim[1:] == [["flux-fill:transformer"]] * 2
    keys = [key for key, _ in runtime.loaded_beside]
    assert keys.index("flux-fill:transformer") > keys.index("zim:model")


def test_indoor_has_no_sky(tiny_models: Path, tmp_path: Path) -> None:
    manifest, out, runtime = _world(tiny_models, tmp_path, scene="indoor", objects_fg1=BOXES["objects_fg1"])
    assert [layer["name"] for layer in manifest["layers"]] == ["fg1", "background"]
    assert not (out / "sky_mask.png").exists() and not (out / "sky_image.png").exists()
    assert runtime.loads["flux-fill:transformer"] == 1


def test_no_labels_indoor_is_sr_and_background(tiny_models: Path, tmp_path: Path) -> None:
    manifest, _, runtime = _world(tiny_models, tmp_path, scene="indoor")
    assert [layer["name"] for layer in manifest["layers"]] == ["background"]
    assert "flux-fill:transformer" not in runtime.loads  # nothing to paint
    assert manifest["layers"][0]["vertices"] == 256 * 512  # meshed at the super-resolved size


def test_super_resolution_is_wrap_aware(tiny_models: Path) -> None:
    runtime = ModelRuntime.create(tiny_models, device="cpu", precision="fp32")
    model = load_esrgan(runtime)
    image = np.random.default_rng(0).integers(0, 255, (32, 128, 3), np.uint8)
    up = upscale(model, image)
    rolled = upscale(model, np.roll(image, 40, axis=1))
    assert up.shape == (64, 256, 3)
    assert np.abs(np.roll(up, 80, axis=1).astype(int) - rolled.astype(int)).max() <= 1  # the seam is invisible


def test_tiny_super_resolution_keeps_the_picture(tiny_models: Path) -> None:
    """The twin upscales like a (noisy) SR model, so layer colours downstream mean something."""
    model = load_esrgan(ModelRuntime.create(tiny_models, device="cpu", precision="fp32"))
    image = gradient_rgb(64, 128)
    up = upscale(model, image).astype(float)
    bilinear = np.asarray(Image.fromarray(image).resize((256, 128), Image.BILINEAR), float)
    assert np.corrcoef(up.ravel(), bilinear.ravel())[0, 1] > 0.8
    assert np.abs(up.mean(axis=(0, 1)) - bilinear.mean(axis=(0, 1))).max() < 30


def test_adapters_switch_and_equal_peft(tiny_models: Path) -> None:
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders import FluxLoraLoaderMixin

    repo = tiny_models / "black-forest-labs/FLUX.1-Fill-dev"
    folders = {
        n: tiny_models / f"tencent/HunyuanWorld-1/HunyuanWorld-PanoInpaint-{f}"
        for n, f in (("scene", "Scene"), ("sky", "Sky"))
    }
    cpu = torch.device("cpu")
    ours = load_transformer(repo, device=cpu, precision=resolve_precision("fp32", cpu))
    hooks = LoraAdapters(ours, {n: read_lora(f) for n, f in folders.items()}, torch.float32)
    reference = FluxTransformer2DModel.from_pretrained(repo, subfolder="transformer", dtype=torch.float32)
    for name, folder in folders.items():
        state = FluxLoraLoaderMixin.lora_state_dict(str(folder), weight_name="lora.safetensors")
        FluxLoraLoaderMixin.load_lora_into_transformer(
            state, network_alphas=None, transformer=reference, adapter_name=name
        )
    g = torch.Generator().manual_seed(0)
    inputs = {
        "hidden_states": torch.randn(1, 32, 384, generator=g),
        "encoder_hidden_states": torch.randn(1, 8, 32),
        "pooled_projections": torch.randn(1, 32),
        "timestep": torch.tensor([0.5]),
        "img_ids": torch.zeros(32, 3),
        "txt_ids": torch.zeros(8, 3),
        "guidance": torch.tensor([30.0]),
        "return_dict": False,
    }
    outputs = {}
    with torch.no_grad():
        for name in ("scene", "sky"):
            hooks.activate(name)
            reference.set_adapters([name])
            outputs[name] = ours(**inputs)[0]
            torch.testing.assert_close(outputs[name], reference(**inputs)[0], rtol=1e-5, atol=1e-5)
        hooks.activate(None)
        base = ours(**inputs)[0]
    assert (outputs["scene"] - outputs["sky"]).abs().max() > 1e-3 and (outputs["scene"] - base).abs().max() > 1e-3
    with pytest.raises(KeyError, match="no adapter"):
        hooks.activate("clouds")


def test_layer_images_are_written_in_the_background(tmp_path: Path) -> None:
    """PNGs leave the job's thread; all are on disk, unchanged, when the block ends; a failed write
    raises then, but never hides the block's own error."""
    from worldgen.stages.layers import image_files

    image = np.random.default_rng(0).integers(0, 255, (32, 64, 3), np.uint8)
    with image_files(tmp_path) as save:
        save("a.png", image)
        save("b.png", image[..., 0])
        image[:] = 0  # the caller may reuse its array at once
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "b.png")), np.asarray(Image.open(tmp_path / "a.png"))[..., 0]
    )
    assert np.asarray(Image.open(tmp_path / "a.png")).any()
    with pytest.raises(FileNotFoundError), image_files(tmp_path / "missing") as save:
        save("c.png", image)
    with pytest.raises(ZeroDivisionError), image_files(tmp_path / "missing") as save:
        save("d.png", image)
        _ = 1 / 0
