"""Writing a world: per-layer PLY and Draco, world.glb, world_preview.glb, panorama, distance, preview.

Draco encoding (the slow part, ≈ 14 s for a 3840×1920 layer) runs in `draco_encoder`
subprocesses, one per layer at once where the cores allow, while the GLBs are written.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from worldgen.export.draco import write_draco
from worldgen.export.glb import write_glb
from worldgen.export.ply import write_ply
from worldgen.geometry.mesh import Mesh
from worldgen.progress import Progress
from worldgen.stages.world_mesh import Layer, build_meshes

PREVIEW_JPEG_WIDTH = 1024


def export_world(
    out_dir: Path,
    layers: list[Layer],
    meshes: list[Mesh],
    formats: set[str],
    panorama: np.ndarray,
    distance: np.ndarray,
    progress: Progress,
) -> list[Path]:
    count = len(meshes)
    # Progress by files written: the panorama and its preview, distance.npy, a PLY per layer, the
    # two GLBs, then each layer's Draco file as its encoder ends (the slow part, in parallel).
    units = [("panorama.png", 1.0), ("distance.npy", 0.5)]
    if "ply" in formats or "drc" in formats:
        units += [(f"mesh_layer{index}.ply", 1.0) for index in range(count)]
    if "glb" in formats:
        units.append(("world.glb", 1.0))
    units.append(("world_preview.glb", 1.0))
    if "drc" in formats:
        units += [(f"mesh_layer{index}.drc", 2.0) for index in range(count)]
    total, done = sum(weight for _, weight in units), 0.0
    weights = dict(units)

    def wrote(name: str, message: str | None = None) -> None:
        nonlocal done
        done += weights[name]
        progress.update("export", done / total, f"wrote {message or name}")

    progress.update("export", 0.0, "writing files")
    written = export_panorama(out_dir, panorama)
    wrote("panorama.png", "panorama.png and preview.jpg")
    np.save(out_dir / "distance.npy", distance.astype(np.float16))
    written.append(out_dir / "distance.npy")
    wrote("distance.npy")
    drafts: list[Future[Path]] = []
    with ThreadPoolExecutor(max_workers=draco_workers(count)) as pool:
        for index, mesh in enumerate(meshes):
            progress.check()
            ply = None
            if "ply" in formats or "drc" in formats:
                ply = write_ply(mesh, out_dir / f"mesh_layer{index}.ply")
                wrote(f"mesh_layer{index}.ply", f"mesh_layer{index}.ply ({mesh.name})")
            if "drc" in formats:
                drafts.append(pool.submit(write_draco, mesh, out_dir / f"mesh_layer{index}.drc", ply=ply))
        if "glb" in formats:
            written.append(write_glb(meshes, out_dir / "world.glb"))
            wrote("world.glb")
        written.append(write_glb(build_meshes(layers, progress, preview=True), out_dir / "world_preview.glb"))
        wrote("world_preview.glb")
        for future in as_completed(drafts):
            path = future.result()
            written.append(path)
            wrote(path.name, f"{path.name} (Draco)")
    if "ply" not in formats:
        for index in range(count):
            (out_dir / f"mesh_layer{index}.ply").unlink(missing_ok=True)
    else:
        written += [out_dir / f"mesh_layer{index}.ply" for index in range(count)]
    progress.update("export", 1.0, "done")
    return written


def draco_workers(layers: int, cores: int | None = None) -> int:
    """Encoders at once: one per layer, at most one per core (each ≈ 1.7 GiB RSS for a full layer)."""
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    return max(1, min(layers, cores))


def export_panorama(out_dir: Path, panorama: np.ndarray) -> list[Path]:
    """panorama.png and its 1024×512 preview.jpg (the world's thumbnail; all a preview job writes)."""
    Image.fromarray(panorama).save(out_dir / "panorama.png")
    preview = cv2.resize(panorama, (PREVIEW_JPEG_WIDTH, PREVIEW_JPEG_WIDTH // 2), interpolation=cv2.INTER_AREA)
    Image.fromarray(preview).save(out_dir / "preview.jpg", quality=88)
    return [out_dir / "panorama.png", out_dir / "preview.jpg"]
