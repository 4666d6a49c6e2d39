"""Draco export through Google's `draco_encoder` (shipped inside the DracoPy wheel, so a plain
`pip install` provides it; no system package or source build).

Measured on a 2-core machine for one 3840×1920 layer (7.4 M vertices with colours): DracoPy's
in-process encoder needs minutes once vertex colours are included (and without reordering it
does not compress), so we run the command-line encoder the wheel ships.

Positions are quantised to 14 bits, a deliberate difference: the reference encodes through
trimesh's `export_draco`, i.e. `draco_encoder -qp 28` (lossless at float32 precision), which more
than doubles the file (a noisy 3840×1920 layer: 71 MB at 28 bits, 32 MB at 14) to remove an error
of L / (2¹⁴ − 1) / 2 per axis over an extent L (≈ 0.2 mm on a 6 m room, 3 mm on 100 m) that no
viewer can show. Draco is the small-download format; `bits=28` gives the reference's file.
Compression level 7 as the reference. Colours: PLY/DRC: sRGB bytes by convention, the PLY's (glTF: linear).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from worldgen.errors import WorldgenError
from worldgen.export.ply import write_ply
from worldgen.geometry.mesh import Mesh

DEFAULT_POSITION_BITS = 14
DEFAULT_COMPRESSION_LEVEL = 7


def encoder_path() -> Path:
    """draco_encoder next to this interpreter (the DracoPy wheel installs it) or on PATH."""
    beside = Path(sys.executable).parent / "draco_encoder"
    if beside.is_file():
        return beside
    found = shutil.which("draco_encoder")
    if found is None:
        raise WorldgenError(
            "draco_encoder not found: it ships with the DracoPy wheel (pip install DracoPy); "
            "request formats without 'drc' to skip Draco",
            code="draco_unavailable",
        )
    return Path(found)


def quantization_error(extent: float, bits: int = DEFAULT_POSITION_BITS) -> float:
    """Worst-case per-axis position error of Draco's uniform quantisation over `extent`."""
    return extent / (2**bits - 1) / 2


def write_draco(
    mesh: Mesh, path: Path, *, bits: int = DEFAULT_POSITION_BITS, level: int = DEFAULT_COMPRESSION_LEVEL,
    ply: Path | None = None,
) -> Path:  # fmt: skip
    """Encode `mesh` to `path`. `ply` may name an already written PLY of the same mesh (saves a write)."""
    with tempfile.TemporaryDirectory(prefix="worldgen-draco-") as tmp:
        source = ply if ply is not None else write_ply(mesh, Path(tmp) / "mesh.ply")
        command = [str(encoder_path()), "-i", str(source), "-o", str(path), "-qp", str(bits), "-cl", str(level)]
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not path.is_file():
        raise WorldgenError(f"draco_encoder failed: {result.stderr.strip()[-500:]}", code="draco_failed")
    return path
