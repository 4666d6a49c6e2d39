"""A warm runtime: models parked between holds within a budget, taken back without loading,
least recently used released first; and two worlds on one runtime, the second without loads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from worldgen.models.runtime import ModelRuntime, model_bytes, warm_budget
from worldgen.pipeline import WorldInputs, generate_world
from worldgen.progress import Progress
from worldgen.request import WorldRequest

LINEAR_BYTES = (64 * 64 + 64) * 4


def _runtime(tiny_models: Path, keep_bytes: int) -> ModelRuntime:
    return ModelRuntime.create(tiny_models, device="cpu", precision="fp32", keep_bytes=keep_bytes)


def _linear() -> torch.nn.Module:
    return torch.nn.Linear(64, 64)


def test_cold_runtime_loads_and_releases_every_time(tiny_models: Path) -> None:
    runtime = _runtime(tiny_models, 0)
    for _ in range(2):
        with runtime.hold("a", "test", _linear) as model:
            kept = model
    assert runtime.loads == {"a": 2} and not runtime.parked and runtime.reuses == {}
    assert kept.weight.device.type == "meta"  # released


def test_warm_runtime_parks_and_reuses(tiny_models: Path) -> None:
    runtime = _runtime(tiny_models, 10 * LINEAR_BYTES)
    with runtime.hold("a", "test", _linear) as first:
        pass
    with runtime.hold("a", "test", _linear) as second:
        assert "a" not in runtime.parked and runtime.resident == {"a": "test"}
    assert second is first and first.weight.device.type == "cpu"
    assert runtime.loads == {"a": 1} and runtime.reuses == {"a": 1}
    assert runtime.parked_bytes() == LINEAR_BYTES
    runtime.release_parked()
    assert not runtime.parked and first.weight.device.type == "meta"


def test_least_recently_used_goes_first(tiny_models: Path) -> None:
    runtime = _runtime(tiny_models, 2 * LINEAR_BYTES)
    models = {}
    for key in ("a", "b", "c"):
        with runtime.hold(key, "test", _linear) as model:
            models[key] = model
    assert list(runtime.parked) == ["b", "c"]
    assert models["a"].weight.device.type == "meta"
    too_big = _runtime(tiny_models, LINEAR_BYTES - 1)
    with too_big.hold("a", "test", _linear) as model:
        pass
    assert not too_big.parked and model.weight.device.type == "meta"


def test_a_failed_step_releases_its_model(tiny_models: Path) -> None:
    runtime = _runtime(tiny_models, 10 * LINEAR_BYTES)
    with pytest.raises(RuntimeError), runtime.hold("a", "test", _linear) as model:
        raise RuntimeError("step failed")
    assert not runtime.parked and runtime.resident == {} and model.weight.device.type == "meta"


def test_model_bytes_finds_modules_inside_wrappers() -> None:
    class Graph:
        def __init__(self) -> None:
            self.module = _linear()

    class Predictor:
        def __init__(self) -> None:
            self.encoder, self.decoder, self.shared = Graph(), Graph(), None

    class Declared:
        resident_bytes = 12345

    assert model_bytes(_linear()) == LINEAR_BYTES
    assert model_bytes(Predictor()) == 2 * LINEAR_BYTES
    assert model_bytes(Declared()) == 12345
    assert model_bytes(object()) == 0


def test_release_reaches_modules_inside_wrappers(tiny_models: Path) -> None:
    """A wrapper (ZIM's predictor, Grounding DINO's) is not a module; its modules are freed at the
    hold's end all the same, and its last inputs dropped, even while a caller still holds it."""

    class Predictor:
        def __init__(self) -> None:
            self.graph = _linear()
            self.features = {"image": torch.ones(4)}

        def forget_inputs(self) -> None:
            self.features = {}

    runtime = _runtime(tiny_models, 0)
    with runtime.hold("p", "test", Predictor) as predictor:
        pass
    assert predictor.graph.weight.device.type == "meta" and predictor.features == {}


def test_warm_budget() -> None:
    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert warm_budget(torch.device("cpu"), {}) == host // 4
    assert warm_budget(torch.device("cpu"), {"WORLDGEN_WARM_BUDGET_GIB": "1.5"}) == 3 << 29


def test_second_world_on_a_warm_runtime_loads_nothing(tiny_models: Path, tmp_path: Path) -> None:
    """Text → layered world twice on one warm runtime: the second loads no model and gives the
    same files as the first (same seed), so parking leaves no state behind (LoRA hooks, step
    caches, ZIM features)."""
    runtime = _runtime(tiny_models, 8 << 30)
    request = WorldRequest(prompt="a harbour at dusk", seed=3, steps=2, height=128, formats=["ply"], scene="outdoor",
                           labels_fg1=["boat"], step_cache="taylorseer")  # fmt: skip
    manifests = []
    for index in range(2):
        manifests.append(generate_world(request, runtime, tmp_path / f"world{index}", Progress(), WorldInputs()))
    first, second = manifests
    assert first["model_loads"] and set(first["model_reuses"]) < set(first["model_loads"])  # VAE, CLIP: twice a job
    assert second["model_loads"] == {} and set(second["model_reuses"]) == set(first["model_loads"])
    assert "flux-dev:transformer+lora-pano-text" in runtime.parked  # the key names the fused LoRA
    assert "flux-fill:transformer" in runtime.parked
    assert second["parked_models"]["gib"] > 0
    files = [{f["name"]: f["sha256"] for f in m["files"]} for m in manifests]
    assert files[0] == files[1]
    on_disk = json.loads((tmp_path / "world1/manifest.json").read_text())
    assert on_disk["model_loads"] == {}
    mesh = [np.fromfile(tmp_path / f"world{i}/mesh_layer0.ply", np.uint8) for i in range(2)]
    assert np.array_equal(mesh[0], mesh[1])
