"""`worldgen container run` as the image runs it: a subprocess under a temporary /opt/ml root."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from worldgen.container.contract import ContainerPaths


def _setup(tmp_path: Path, tiny_models: Path, request: dict) -> ContainerPaths:
    paths = ContainerPaths(tmp_path / "ml")
    paths.request_file.parent.mkdir(parents=True)
    paths.request_file.write_text(json.dumps(request))
    paths.models_dir.parent.mkdir(parents=True, exist_ok=True)
    paths.models_dir.symlink_to(tiny_models)
    return paths


def _run(paths: ContainerPaths, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "WORLDGEN_CONTAINER_ROOT": str(paths.root)}
    return subprocess.Popen(
        [sys.executable, "-m", "worldgen", "container", "run"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, **kwargs,
    )  # fmt: skip


def test_success_writes_outputs_progress_and_manifest(tmp_path: Path, tiny_models: Path) -> None:
    paths = _setup(tmp_path, tiny_models, {"prompt": "a bay", "seed": 4, "height": 64, "steps": 2})
    process = _run(paths)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    progress = json.loads(paths.progress_file.read_text())
    assert progress["status"] == "succeeded" and progress["progress"] == 1.0
    manifest = json.loads(paths.manifest_file.read_text())
    assert manifest["seed"] == 4 and manifest["request"]["prompt"] == "a bay"
    assert set(manifest["versions"]) >= {"worldgen", "torch", "diffusers", "transformers"}
    assert manifest["timings_s"]["panorama"] > 0 and "peak_rss_gib" in manifest["resources"]
    assert manifest["precision"]["mode"] == "fp32"
    for entry in manifest["files"]:
        data = (paths.output_dir / entry["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["size"]
    assert np.asarray(Image.open(paths.output_dir / "panorama.png")).shape == (64, 128, 3)
    assert not paths.message_file.exists()


def test_invalid_request_fails_with_a_message(tmp_path: Path, tiny_models: Path) -> None:
    paths = _setup(tmp_path, tiny_models, {"prompt": "a bay", "seed": 4, "height": 100})
    process = _run(paths)
    process.communicate(timeout=120)
    assert process.returncode == 2
    message = paths.message_file.read_text()
    assert message.startswith("invalid_request: ") and "multiple of 16" in message
    assert len(message.encode()) <= 1024


def test_missing_models_fail_with_the_fetch_command(tmp_path: Path) -> None:
    paths = _setup(tmp_path, tmp_path / "no-models", {"prompt": "a bay", "seed": 4, "height": 64, "steps": 1})
    process = _run(paths)
    process.communicate(timeout=120)
    assert process.returncode == 1
    assert paths.message_file.read_text().startswith("model_missing: ")
    assert "worldgen models download" in paths.message_file.read_text()


def test_sigterm_stops_cleanly_within_30s(tmp_path: Path, tiny_models: Path) -> None:
    paths = _setup(tmp_path, tiny_models, {"prompt": "a bay", "seed": 4, "height": 256, "steps": 200})
    process = _run(paths)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        report = json.loads(paths.progress_file.read_text()) if paths.progress_file.exists() else {}
        if report.get("stage") == "panorama" and report.get("message", "").startswith("step"):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the job never reached the denoising loop")
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)
    assert time.monotonic() - sent < 30
    assert process.returncode == 143
    assert paths.message_file.read_text().startswith("canceled: ")
    assert json.loads(paths.progress_file.read_text())["status"] == "canceled"
