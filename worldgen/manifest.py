"""manifest.json: what a job asked for, what ran, how long it took, and every file it wrote."""

from __future__ import annotations

import hashlib
import platform
import resource
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from worldgen import __version__
from worldgen.storage.base import content_type_for

GIB = 1 << 30


def file_entry(path: Path, root: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return {
        "name": str(path.relative_to(root)),
        "size": path.stat().st_size,
        "sha256": digest.hexdigest(),
        "content_type": content_type_for(path.name),
    }


def versions() -> dict[str, str]:
    found = {"worldgen": __version__, "python": platform.python_version()}
    for package in ("torch", "diffusers", "transformers"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "absent"
    return found


def resources(device: torch.device) -> dict[str, Any]:
    """Peak host RSS of this process and its children, and peak GPU memory if a GPU was used."""
    rss_kib = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )
    report: dict[str, Any] = {"peak_rss_gib": round(rss_kib / (1 << 20), 3), "device": str(device)}
    if device.type == "cuda":
        report.update(
            gpu=torch.cuda.get_device_name(device),
            peak_gpu_allocated_gib=round(torch.cuda.max_memory_allocated(device) / GIB, 3),
            peak_gpu_reserved_gib=round(torch.cuda.max_memory_reserved(device) / GIB, 3),
        )
    return report
