"""CPU benchmark of the geometry half of the pipeline at full size (issue: panorama → 3D world).

    python bench/mesh_export.py [--out DIR]

1. fusion alone at 1920×960: 12 views (512²) cut from an analytic box room, each with its own
   random scale, fused back (error vs. truth reported);
2. one 3840×1920 layer: mesh + gap filling (sky band excluded, speckle holes), then every export
   (PLY, Draco via draco_encoder, world.glb, world_preview.glb).
Peak RSS is read from getrusage (this process; draco_encoder reported separately).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import box_room, gradient_rgb  # noqa: E402
from worldgen.export.draco import write_draco  # noqa: E402
from worldgen.export.glb import write_glb  # noqa: E402
from worldgen.export.ply import write_ply  # noqa: E402
from worldgen.geometry.fusion import fuse_views  # noqa: E402
from worldgen.geometry.mesh import grid_mesh  # noqa: E402
from worldgen.geometry.views import ViewCameras, sample_views  # noqa: E402


def rss_gib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / (1 << 20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="worldgen-bench-"))
    out.mkdir(parents=True, exist_ok=True)

    height, width = 960, 1920
    truth = box_room(height, width)
    cameras = ViewCameras.icosahedron()
    views = sample_views(truth, cameras) * np.random.default_rng(0).uniform(0.5, 2.0, (12, 1, 1))
    started = time.perf_counter()
    fused, _ = fuse_views(views.astype(np.float32), np.ones(views.shape, bool), cameras, height, width)
    fusion_s = time.perf_counter() - started
    relative = np.abs(fused / np.median(fused / truth) - truth) / truth
    print(f"fusion 1920x960: {fusion_s:.2f} s, relative error mean {relative.mean():.4f} "
          f"max {relative.max():.4f}, peak RSS {rss_gib():.2f} GiB")  # fmt: skip

    height, width = 1920, 3840
    distance = box_room(height, width)
    rgb = gradient_rgb(height, width)
    keep = np.ones((height, width), bool)
    keep[:300] = False  # a sky band
    keep &= np.random.default_rng(1).random((height, width)) > 0.0005  # speckle holes
    started = time.perf_counter()
    mesh = grid_mesh("background", distance, rgb, keep)
    mesh_s = time.perf_counter() - started
    print(f"mesh + gap filling 3840x1920: {mesh_s:.2f} s, {mesh.vertex_count} vertices, {mesh.face_count} faces, "
          f"peak RSS {rss_gib():.2f} GiB")  # fmt: skip

    timings = {}
    started = time.perf_counter()
    ply = write_ply(mesh, out / "mesh_layer0.ply")
    timings["ply"] = time.perf_counter() - started
    started = time.perf_counter()
    write_glb([mesh], out / "world.glb")
    timings["glb"] = time.perf_counter() - started
    started = time.perf_counter()
    preview = grid_mesh("background", distance, rgb, keep, max_width=1024)
    write_glb([preview], out / "world_preview.glb")
    timings["preview_glb"] = time.perf_counter() - started
    started = time.perf_counter()
    write_draco(mesh, out / "mesh_layer0.drc", ply=ply)
    timings["drc"] = time.perf_counter() - started
    sizes = {p.name: p.stat().st_size / 1e6 for p in sorted(out.iterdir())}
    print("exports: " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
          + f"; total {sum(timings.values()):.2f} s (PLY+GLB+preview {timings['ply'] + timings['glb'] + timings['preview_glb']:.2f} s)")  # fmt: skip
    print("sizes MB: " + ", ".join(f"{k} {v:.1f}" for k, v in sizes.items()))
    print(f"peak RSS {rss_gib():.2f} GiB (draco_encoder child {rss_gib(resource.RUSAGE_CHILDREN):.2f} GiB)")


if __name__ == "__main__":
    main()
