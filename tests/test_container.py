"""`worldgen container run` as the image runs it: a subprocess under a temporary /opt/ml root."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from worldgen.container.contract import ContainerPaths

NOBODY = 65534


def _setup(tmp_path: Path, tiny_models: Path, request: dict) -> ContainerPaths:
    """A contract root laid out as SageMaker lays it: it creates each output's LocalPath and
    /opt/ml/output itself, owned by root with mode 0755, before the container starts."""
    paths = ContainerPaths(tmp_path / "ml")
    for mount in (paths.output_dir, paths.message_file.parent):
        mount.mkdir(parents=True)
        mount.chmod(0o755)
    paths.request_file.parent.mkdir(parents=True)
    paths.request_file.write_text(json.dumps(request))
    paths.models_dir.parent.mkdir(parents=True, exist_ok=True)
    paths.models_dir.symlink_to(tiny_models)
    return paths


def _run(paths: ContainerPaths, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "WORLDGEN_CONTAINER_ROOT": str(paths.root), **(env or {})}
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


# ---- a GPU job on a machine without one ---------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "request_changes", "reason"),
    [
        ({"WORLDGEN_DEVICE": "cuda"}, {}, "WORLDGEN_DEVICE=cuda"),
        ({"WORLDGEN_INSTANCE_TYPE": "ml.g5.2xlarge"}, {}, "ml.g5.2xlarge"),
        ({}, {"precision": "fp8"}, "precision 'fp8'"),
    ],
)
def test_gpu_job_without_a_gpu_fails_at_once(
    tmp_path: Path, tiny_models: Path, env: dict[str, str], request_changes: dict, reason: str
) -> None:
    """This machine has no NVIDIA driver: the job must stop before loading any model, saying which
    CUDA torch was built for and which driver it found, instead of running on the CPU until
    SageMaker's MaxRuntimeInSeconds."""
    assert not torch.cuda.is_available()
    request = {"prompt": "a bay", "seed": 4, "height": 64, "steps": 2, **request_changes}
    paths = _setup(tmp_path, tiny_models, request)
    environ = {
        key: value for key, value in os.environ.items() if key not in ("WORLDGEN_DEVICE", "WORLDGEN_INSTANCE_TYPE")
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "worldgen", "container", "run"],
        env={**environ, "WORLDGEN_CONTAINER_ROOT": str(paths.root), **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1, output
    message = paths.message_file.read_text()
    assert message.startswith("gpu_unavailable: "), message
    assert reason in message
    assert f"CUDA {torch.version.cuda}" in message and "no NVIDIA driver found" in message
    progress = json.loads(paths.progress_file.read_text())
    assert progress["status"] == "failed" and progress["stage"] == "loading_models"
    assert not (paths.output_dir / "panorama.png").exists()


def test_cpu_device_overrides_the_instance_type(tmp_path: Path, tiny_models: Path) -> None:
    """WORLDGEN_DEVICE=cpu is an explicit choice: no GPU is demanded even on a SageMaker instance."""
    paths = _setup(tmp_path, tiny_models, {"prompt": "a bay", "seed": 4, "height": 100})
    process = _run(paths, {"WORLDGEN_DEVICE": "cpu", "WORLDGEN_INSTANCE_TYPE": "ml.g5.2xlarge"})
    process.communicate(timeout=120)
    assert process.returncode == 2 and paths.message_file.read_text().startswith("invalid_request: ")


# ---- SageMaker's root-owned mounts ---------------------------------------------------------------


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A contract root any user can reach (pytest's own temporary tree is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="worldgen-mounts-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _python_for(uid: int) -> tuple[list[str], dict[str, str]]:
    """An interpreter `uid` can run: ours, or, when ours lives under a home only root may enter
    (pyenv under /root here), the system Python of the same version with our packages."""
    home = {"HOME": tempfile.gettempdir()}
    candidates = [([sys.executable], home)]
    system = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}", path="/usr/bin:/usr/local/bin")
    if system:
        packages = os.pathsep.join([sysconfig.get_paths()["purelib"], str(Path(__file__).resolve().parents[1])])
        candidates.append(([system], {**home, "PYTHONPATH": packages}))
    for command, env in candidates:
        try:
            probe = subprocess.run([*command, "-c", "import worldgen.cli.main"], env={**os.environ, **env},
                                   user=uid, group=uid, extra_groups=[], capture_output=True)  # fmt: skip
        except PermissionError:  # the interpreter itself is out of reach
            continue
        if probe.returncode == 0:
            return command, env
    raise AssertionError(f"no Python interpreter that uid {uid} may run: {candidates}")


@pytest.mark.skipif(os.geteuid() != 0, reason="creating root-owned mounts and switching users needs root")
def test_unwritable_mounts_fail_at_once_naming_the_path(shared_root: Path) -> None:
    """As a non-root USER in the image would: SageMaker's mounts are root's, so the job cannot
    write its outputs, nor the message file; it says so on stderr (CloudWatch) and exits."""
    paths = ContainerPaths(shared_root / "ml")
    for mount in (paths.output_dir, paths.message_file.parent, paths.request_file.parent):
        mount.mkdir(parents=True, mode=0o755)
    paths.request_file.write_text(json.dumps({"prompt": "a bay", "seed": 4, "height": 64, "steps": 2}))
    assert paths.output_dir.stat().st_uid == 0 and paths.output_dir.stat().st_mode & 0o777 == 0o755
    command, env = _python_for(NOBODY)
    started = time.monotonic()
    result = subprocess.run(
        [*command, "-m", "worldgen", "container", "run"],
        env={**os.environ, **env, "WORLDGEN_CONTAINER_ROOT": str(paths.root)},
        user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert time.monotonic() - started < 60
    assert str(paths.output_dir) in result.stderr and "Permission denied" in result.stderr
    assert f"uid {NOBODY}" in result.stderr and "root" in result.stderr
    assert not paths.message_file.exists() and not paths.progress_file.exists()
