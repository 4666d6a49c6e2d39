"""Panorama → triangle mesh, fully vectorised (method §4.9).

One vertex per pixel at distance × ray, coloured by the pixel. Quads join (r, c), (r, c+1 mod W),
(r+1, c), (r+1, c+1 mod W) — the modulo stitches the seam — as two triangles, dropped if any
corner is excluded. Small gaps are then filled without loops: a quad with exactly one excluded
corner contributes the triangle of its three kept corners, and pixels of small excluded islands
(holes of at most `hole_pixels`) become usable again; in both cases only triangles whose edges
are all shorter than `bridge` are added, so depth edges stay open.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from worldgen.geometry.sphere import panorama_rays

DEFAULT_BRIDGE = 0.5
"""Longest edge (scene units) of a gap-filling triangle; the reference's `connect_boundary_max_dist`."""
DEFAULT_HOLE_PIXELS = 64


@dataclass
class Mesh:
    name: str
    vertices: np.ndarray
    """(V, 3) float32, method frame (+z up)."""
    faces: np.ndarray
    """(F, 3) uint32, counter-clockwise seen from the panorama centre."""
    colors: np.ndarray
    """(V, 3) uint8 RGB."""

    @property
    def vertex_count(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def face_count(self) -> int:
        return int(self.faces.shape[0])


def resize_layer(
    distance: np.ndarray, rgb: np.ndarray, keep: np.ndarray | None, max_width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Downsample a layer's maps so the mesh is at most `max_width` vertices wide."""
    height, width = distance.shape
    if width <= max_width:
        return distance, rgb, keep
    size = (max_width, max(1, round(height * max_width / width)))
    distance = cv2.resize(distance, size, interpolation=cv2.INTER_LINEAR)
    rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    if keep is not None:
        keep = cv2.resize(keep.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return distance, rgb, keep


def _quad_corners(height: int, width: int) -> tuple[np.ndarray, ...]:
    """Vertex indices (H−1, W) of each quad's top-left, top-right, bottom-left, bottom-right corner."""
    rows = (np.arange(height - 1, dtype=np.uint32) * np.uint32(width))[:, None]
    cols = np.arange(width, dtype=np.uint32)[None, :]
    right = np.roll(cols, -1, axis=1)
    tl, tr = rows + cols, rows + right
    return tl, tr, tl + np.uint32(width), tr + np.uint32(width)


def _short_edges(vertices: np.ndarray, triangles: np.ndarray, limit: float) -> np.ndarray:
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    longest = np.maximum.reduce(
        [np.linalg.norm(a - b, axis=1), np.linalg.norm(b - c, axis=1), np.linalg.norm(c - a, axis=1)]
    )
    return longest <= limit


def small_holes(keep: np.ndarray, max_pixels: int) -> np.ndarray:
    """Excluded islands of at most `max_pixels` (4-connected) that kept pixels surround."""
    labels, count = ndimage.label(~keep)
    if count == 0:
        return np.zeros_like(keep)
    sizes = np.bincount(labels.ravel())
    small = sizes <= max_pixels
    small[0] = False
    return small[labels]


def grid_mesh(
    name: str,
    distance: np.ndarray,
    rgb: np.ndarray,
    keep: np.ndarray | None = None,
    *,
    max_width: int = 3840,
    fill_gaps: bool = True,
    bridge: float = DEFAULT_BRIDGE,
    hole_pixels: int = DEFAULT_HOLE_PIXELS,
) -> Mesh:
    """Mesh of a panorama layer: `distance` (H, W), `rgb` (H, W, 3) uint8, `keep` (H, W) bool."""
    distance, rgb, keep = resize_layer(distance, rgb, keep, max_width)
    height, width = distance.shape
    vertices = panorama_rays(height, width)
    vertices *= distance[..., None].astype(np.float32)
    vertices = vertices.reshape(-1, 3)
    colors = np.ascontiguousarray(rgb.reshape(-1, 3), dtype=np.uint8)
    tl, tr, bl, br = _quad_corners(height, width)
    if keep is None:
        full = np.ones(tl.shape, bool)
    else:
        usable = keep.reshape(-1)
        full = usable[tl] & usable[tr] & usable[bl] & usable[br]
    # Two triangles per kept quad, counter-clockwise as seen from the centre: (tl, bl, tr), (tr, bl, br).
    count = int(full.sum())
    faces = np.empty((2 * count, 3), np.uint32)
    faces[:count, 0], faces[:count, 1], faces[:count, 2] = tl[full], bl[full], tr[full]
    faces[count:, 0], faces[count:, 1], faces[count:, 2] = tr[full], bl[full], br[full]
    if fill_gaps and keep is not None:
        faces = np.concatenate([faces, *_gap_triangles(vertices, keep, (tl, tr, bl, br), bridge, hole_pixels)])
    if keep is None:
        return Mesh(name, vertices, faces, colors)
    return compact(name, vertices, faces, colors)


def _gap_triangles(
    vertices: np.ndarray, keep: np.ndarray, corners: tuple[np.ndarray, ...], bridge: float, hole_pixels: int
) -> list[np.ndarray]:
    tl, tr, bl, br = corners
    usable = keep.reshape(-1)
    kept = [usable[c] for c in corners]
    count = kept[0].astype(np.int8) + kept[1] + kept[2] + kept[3]
    notch = count == 3
    # The three kept corners, in the order tl → bl → br → tr (counter-clockwise from the centre).
    choices = [
        (~kept[0], (bl, br, tr)),
        (~kept[1], (tl, bl, br)),
        (~kept[3], (tl, bl, tr)),
        (~kept[2], (tl, br, tr)),
    ]
    added = []
    for missing, (a, b, c) in choices:
        select = notch & missing
        added.append(np.stack([a[select], b[select], c[select]], axis=1))
    holes = small_holes(keep, hole_pixels).reshape(-1)
    if holes.any():
        widened = usable | holes
        wide = [widened[c] for c in corners]
        full_wide = wide[0] & wide[1] & wide[2] & wide[3]
        touches_hole = holes[tl] | holes[tr] | holes[bl] | holes[br]
        select = full_wide & touches_hole
        added.append(np.stack([tl[select], bl[select], tr[select]], axis=1))
        added.append(np.stack([tr[select], bl[select], br[select]], axis=1))
    gap = np.concatenate(added).astype(np.uint32)
    return [gap[_short_edges(vertices, gap, bridge)]]


def compact(name: str, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> Mesh:
    """Drop unreferenced vertices and renumber faces (vectorised)."""
    used = np.zeros(len(vertices), bool)
    used[faces.ravel()] = True
    remap = (np.cumsum(used, dtype=np.int64) - 1).astype(np.uint32)
    return Mesh(
        name=name,
        vertices=np.ascontiguousarray(vertices[used], dtype=np.float32),
        faces=np.ascontiguousarray(remap[faces], dtype=np.uint32),
        colors=np.ascontiguousarray(colors[used], dtype=np.uint8),
    )


def depth_edge_keep(distance: np.ndarray, beta: float = 6.6, alpha: float = 0.3) -> np.ndarray:
    """Pixels away from depth discontinuities: exp(−β·|Sobel(1/d)|) > α (x wraps around the seam)."""
    disparity = 1.0 / np.clip(distance, 1e-6, None).astype(np.float32)
    padded = np.concatenate([disparity[:, -1:], disparity, disparity[:, :1]], axis=1)
    padded = np.concatenate([padded[:1], padded, padded[-1:]], axis=0)
    gx = cv2.Sobel(padded, cv2.CV_32F, 1, 0, ksize=3)[1:-1, 1:-1]
    gy = cv2.Sobel(padded, cv2.CV_32F, 0, 1, ksize=3)[1:-1, 1:-1]
    return np.exp(-beta * np.hypot(gx, gy)) > alpha


def foreground_keep(mask: np.ndarray, distance: np.ndarray, erode: int = 5) -> np.ndarray:
    """A foreground layer's usable pixels: its mask eroded (erode × erode) and cut at depth edges."""
    eroded = cv2.erode(mask.astype(np.uint8), np.ones((erode, erode), np.uint8)) > 0
    return eroded & depth_edge_keep(distance)
