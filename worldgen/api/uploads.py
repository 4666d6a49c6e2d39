"""Validation of uploaded inputs: photos and panoramas (PNG/JPEG) and distance maps (.npy)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from worldgen.api.errors import ApiError

KINDS = ("image", "panorama", "distance")
MIN_SIDE, MAX_SIDE = 16, 8192


@dataclass(frozen=True)
class CheckedUpload:
    kind: str
    content_type: str
    width: int
    height: int


def check_upload(path: Path, kind: str | None, filename: str, *, max_image: int, max_npy: int) -> CheckedUpload:
    """Sniff the bytes (never trust the client's content type) and check size and dimensions."""
    head = path.open("rb").read(8)
    size = path.stat().st_size
    is_npy = head.startswith(b"\x93NUMPY")
    kind = kind or ("distance" if is_npy else "image")
    if kind not in KINDS:
        raise ApiError(422, "invalid_request", f"kind must be one of {', '.join(KINDS)}", {"field": "kind"})
    if kind == "distance":
        if not is_npy:
            raise ApiError(415, "unsupported_media_type", "a distance map must be a .npy file")
        if size > max_npy:
            raise ApiError(413, "too_large", f"{filename}: {size} bytes; .npy uploads are limited to {max_npy}")
        return _check_npy(path, filename)
    if size > max_image:
        raise ApiError(413, "too_large", f"{filename}: {size} bytes; images are limited to {max_image} bytes")
    if not (head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"\xff\xd8\xff")):
        raise ApiError(415, "unsupported_media_type", f"{filename}: only PNG and JPEG images are accepted")
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            width, height = image.size
            content_type = "image/png" if image.format == "PNG" else "image/jpeg"
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ApiError(422, "invalid_image", f"{filename}: not a readable image ({exc})") from None
    _check_sides(width, height, filename)
    if kind == "panorama" and width != 2 * height:
        raise ApiError(422, "invalid_image", f"{filename}: a panorama must be 2:1 (got {width}×{height})")
    return CheckedUpload(kind, content_type, width, height)


def _check_npy(path: Path, filename: str) -> CheckedUpload:
    try:
        array = np.load(io.BytesIO(path.read_bytes()), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ApiError(422, "invalid_distance", f"{filename}: not a readable .npy array ({exc})") from None
    if array.ndim != 2 or array.dtype.kind != "f":
        raise ApiError(
            422, "invalid_distance", f"{filename}: expected a 2-D float array, got {array.dtype} {array.shape}"
        )
    height, width = array.shape
    _check_sides(width, height, filename)
    if width != 2 * height:
        raise ApiError(422, "invalid_distance", f"{filename}: a distance map must be 2:1 (got {width}×{height})")
    valid = np.isfinite(array)
    if not valid.any() or (array[valid] <= 0).any():
        raise ApiError(422, "invalid_distance", f"{filename}: distances must be positive where finite")
    return CheckedUpload("distance", "application/octet-stream", width, height)


def _check_sides(width: int, height: int, filename: str) -> None:
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise ApiError(
            422, "invalid_image", f"{filename}: {width}×{height} is outside {MIN_SIDE}..{MAX_SIDE} pixels per side"
        )
