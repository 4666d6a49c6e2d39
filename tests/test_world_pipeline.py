"""The whole pipeline on tiny models: text → panorama → depth → mesh → files, and from a given
panorama + distance map (geometry checked exactly)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.helpers import BOX, box_room, gradient_rgb
from worldgen.models.runtime import ModelRuntime
from worldgen.pipeline import WorldInputs, generate_world
from worldgen.progress import Progress
from worldgen.request import WorldRequest


def _generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worldgen", "generate", *args], capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_text_to_world_cli(tiny_models: Path, tmp_path: Path) -> None:
    out = tmp_path / "world"
    result = _generate("a quiet bay", "--out", str(out), "--models-dir", str(tiny_models), "--steps", "2",
                       "--height", "128", "--formats", "glb", "ply", "drc", "--seed", "5",
                       "--single-layer")  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = {"panorama.png", "distance.npy", "preview.jpg", "world.glb", "world_preview.glb", "mesh_layer0.ply",
                "mesh_layer0.drc", "manifest.json"}  # fmt: skip
    assert {p.name for p in out.iterdir()} == expected
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["layers"] == [{"index": 0, "name": "background", "vertices": 128 * 256, "faces": 2 * 127 * 256}]
    assert {"panorama", "depth", "mesh", "export"} <= set(manifest["timings_s"])
    distance = np.load(out / "distance.npy")
    assert distance.shape == (128, 256) and distance.dtype == np.float16 and (distance > 0).all()
    scene = trimesh.load(out / "world.glb")
    assert list(scene.graph.nodes_geometry) == ["background"]
    assert Image.open(out / "preview.jpg").size == (1024, 512)


def test_from_panorama_and_distance_exact_geometry(tiny_models: Path, tmp_path: Path) -> None:
    height, width = 96, 192
    Image.fromarray(gradient_rgb(height, width)).save(tmp_path / "pano.png")
    np.save(tmp_path / "distance.npy", box_room(height, width))
    out = tmp_path / "out"
    result = _generate("--panorama", str(tmp_path / "pano.png"), "--distance", str(tmp_path / "distance.npy"),
                       "--out", str(out), "--models-dir", str(tiny_models), "--no-depth-compression",
                       "--single-layer")  # fmt: skip
    assert result.returncode == 0, result.stderr
    mesh = trimesh.load(out / "mesh_layer0.ply", process=False)
    wall = np.max(np.abs(mesh.vertices) / BOX, axis=1)
    assert np.abs(wall - 1).max() < 1e-3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["panorama"]["mode"] == "uploaded" and "depth" not in manifest["timings_s"]


def test_panorama_only_runs_depth(cpu_runtime: ModelRuntime, tmp_path: Path) -> None:
    """A panorama without a distance map gets MoGe depth (tiny) and a full world."""
    Image.fromarray(gradient_rgb(128, 256)).save(tmp_path / "p", format="PNG")
    request = WorldRequest(panorama_upload_id="p", seed=1, formats=["glb"], layered=False)
    manifest = generate_world(request, cpu_runtime, tmp_path / "out", Progress(), WorldInputs(tmp_path))
    assert manifest["timings_s"]["depth"] > 0 and "panorama" not in manifest["timings_s"]
    assert not (tmp_path / "out/mesh_layer0.ply").exists()
    assert cpu_runtime.peak_resident == ["moge:model"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a lake", "--distance", "d.npy"], "--distance needs the --panorama"),  # the CLI names its flags
        (["--panorama", "missing.png"], "file not found"),
        ([], "prompt must not be blank"),
    ],
)
def test_cli_input_errors(tiny_models: Path, tmp_path: Path, args: list[str], message: str) -> None:
    np.save(tmp_path / "d.npy", np.ones((8, 16), np.float32))
    result = subprocess.run([sys.executable, "-m", "worldgen", "generate", *args, "--out", str(tmp_path / "o"),
                             "--models-dir", str(tiny_models)], capture_output=True, text=True, cwd=tmp_path,
                            timeout=120)  # fmt: skip
    assert result.returncode == 2 and message in result.stderr, result.stderr
