"""`worldgen generate --stage panorama` as a user runs it: a real subprocess on the tiny models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def _worldgen(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worldgen.cli.main", *args], capture_output=True, text=True, timeout=timeout
    )


def test_generate_panorama(tiny_models: Path, tmp_path: Path) -> None:
    """Without --height/--steps the tiny models' defaults apply (128 px, 4 steps); each step shows."""
    out = tmp_path / "out"
    result = _worldgen("generate", "a harbour at night", "--stage", "panorama", "--out", str(out),
                       "--models-dir", str(tiny_models), "--seed", "9")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "seed 9" in result.stdout
    image = np.asarray(Image.open(out / "panorama.png"))
    assert image.shape == (128, 256, 3)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["panorama"]["steps"] == 4 and manifest["request"]["stage"] == "panorama"
    assert "panorama step 4/4" in result.stderr and "Traceback" not in result.stderr


def test_generate_from_an_image(tiny_models: Path, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    Image.fromarray((np.random.default_rng(1).random((48, 64, 3)) * 255).astype(np.uint8)).save(photo)
    result = _worldgen("generate", "a kitchen", "--image", str(photo), "--out", str(tmp_path / "o"),
                       "--models-dir", str(tiny_models), "--steps", "1", "--height", "64")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "o/panorama.png").size == (128, 64)


def test_bad_inputs_name_the_problem(tiny_models: Path, tmp_path: Path) -> None:
    bad_size = _worldgen("generate", "a lake", "--out", str(tmp_path), "--models-dir", str(tiny_models),
                         "--height", "100")  # fmt: skip
    assert bad_size.returncode == 2
    assert "multiple of 16" in bad_size.stderr and "Traceback" not in bad_size.stderr
    missing = _worldgen("generate", "a lake", "--out", str(tmp_path), "--models-dir", str(tmp_path / "none"),
                        "--height", "64")  # fmt: skip
    assert missing.returncode == 2
    assert "worldgen models download flux-dev" in missing.stderr and "worldgen models make-tiny DIR" in missing.stderr
    no_image = _worldgen("generate", "a lake", "--image", str(tmp_path / "nope.png"), "--out", str(tmp_path),
                         "--models-dir", str(tiny_models), "--height", "64")  # fmt: skip
    assert no_image.returncode == 2 and "--image" in no_image.stderr and "file not found" in no_image.stderr


def test_generate_finds_the_tiny_models_that_scripts_serve_writes(tiny_models: Path, tmp_path: Path) -> None:
    """scripts/serve writes DATA_DIR/tiny-models; `generate` in the same place finds them without
    --models-dir (README: the two commands, then the CLI). Real models in DATA_DIR/models win."""
    import os
    import shutil

    shutil.copytree(tiny_models, tmp_path / "worldgen-data" / "tiny-models")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLDGEN_MODELS_DIR", "WORLDGEN_DATA_DIR")}
    result = subprocess.run(
        [sys.executable, "-m", "worldgen.cli.main", "generate", "a harbour", "--stage", "panorama", "--out", "out"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "out/panorama.png").size == (256, 128)  # and the tiny models' defaults
    (tmp_path / "worldgen-data" / "models").mkdir()  # a real models root (empty here) takes precedence
    again = subprocess.run(
        [sys.executable, "-m", "worldgen.cli.main", "generate", "a harbour", "--stage", "panorama", "--out", "o2"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert again.returncode == 2 and "worldgen-data/models" in again.stderr
