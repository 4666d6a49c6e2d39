"""Validation of uploaded inputs: photos and panoramas (PNG/JPEG) and distance maps (.npy).

Whatever a file claims in its header (image size, array shape) is checked before anything is decoded
or allocated: a 68-byte PNG that claims 65535×32767 pixels, or a .npy that claims 160 GB over 64
bytes, used to end in a 500. Images and arrays are read from memory, never from a path, so no
message from PIL or numpy can show a server path; messages name the client's file only."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, JpegImagePlugin, PngImagePlugin

from worldgen.api.errors import ApiError

KINDS = ("image", "panorama", "distance")
MIN_SIDE, MAX_SIDE = 16, 8192
PNG_MAGIC, JPEG_MAGIC, NPY_MAGIC = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\x93NUMPY"

# The plugin classes read just the header: no pixel data, and not Image.open's bomb check, which
# would refuse a huge image without saying its size.
_HEADER_READERS: dict[bytes, type[ImageFile.ImageFile]] = {
    PNG_MAGIC: PngImagePlugin.PngImageFile,
    JPEG_MAGIC: JpegImagePlugin.JpegImageFile,
}
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
_UNREADABLE = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError)
"""What PIL's plugins raise on malformed data (ImageFile wraps some of it in SyntaxError, not all)."""


@dataclass(frozen=True)
class CheckedUpload:
    kind: str
    content_type: str
    width: int
    height: int


def size_limit(head: bytes, *, max_image: int, max_npy: int) -> int:
    """The byte limit for an upload whose first bytes are `head`, so that it can be applied while the
    body streams in, before the `kind` field (which may come after the file) is known: .npy by its
    magic, anything else as an image; the larger of the two until enough bytes are known."""
    if len(head) < len(NPY_MAGIC):
        return max(max_image, max_npy)
    return max_npy if head.startswith(NPY_MAGIC) else max_image


def check_upload(path: Path, kind: str | None, filename: str, *, max_image: int, max_npy: int) -> CheckedUpload:
    """Sniff the bytes (never trust the client's content type) and check size and dimensions."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
    is_npy = head.startswith(NPY_MAGIC)
    kind = kind or ("distance" if is_npy else "image")
    if kind not in KINDS:
        raise ApiError(422, "invalid_request", f"kind must be one of {', '.join(KINDS)}", {"field": "kind"})
    if kind == "distance":
        if not is_npy:
            raise ApiError(415, "unsupported_media_type", "a distance map must be a .npy file")
        if size > max_npy:
            raise ApiError(413, "too_large", f"{filename}: {size} bytes; .npy uploads are limited to {max_npy}")
        return _check_npy(path.read_bytes(), filename)
    if size > max_image:
        raise ApiError(413, "too_large", f"{filename}: {size} bytes; images are limited to {max_image} bytes")
    reader = next((r for magic, r in _HEADER_READERS.items() if head.startswith(magic)), None)
    if reader is None:
        raise ApiError(415, "unsupported_media_type", f"{filename}: only PNG and JPEG images are accepted")
    return _check_image(path.read_bytes(), reader, kind, filename)


def _check_image(data: bytes, reader: type[ImageFile.ImageFile], kind: str, filename: str) -> CheckedUpload:
    """Size from the header first, then one decode to catch truncated or corrupt data: JPEG at 1/8
    scale (draft: the whole scan is still read, at 1/64 of the memory), PNG by verify() (every chunk
    and its CRC, without inflating the pixels)."""
    try:
        with reader(io.BytesIO(data)) as header:
            width, height = header.size
    except _UNREADABLE as exc:
        raise _unreadable("invalid_image", f"{filename}: not a readable image", exc) from None
    _check_sides(width, height, filename)
    if kind == "panorama" and width != 2 * height:
        raise ApiError(422, "invalid_image", f"{filename}: a panorama must be 2:1 (got {width}×{height})")
    try:
        with Image.open(io.BytesIO(data), formats=[header.format or ""]) as image:
            if image.format == "JPEG":
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
                image.load()
            else:
                image.verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(
            413, "too_large", f"{filename}: {width}×{height} is more pixels than this server decodes"
        ) from None
    except _UNREADABLE as exc:
        raise _unreadable("invalid_image", f"{filename}: not a readable image", exc) from None
    content_type = "image/png" if header.format == "PNG" else "image/jpeg"
    return CheckedUpload(kind, content_type, width, height)


def _check_npy(data: bytes, filename: str) -> CheckedUpload:
    """The header's dtype and shape must match the bytes present before any array is made: np.load
    allocates what the header claims first (a MemoryError for a 64-byte file claiming 160 GB)."""
    handle = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(handle)
        if version not in _NPY_HEADER_READERS:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
        shape, _fortran_order, dtype = _NPY_HEADER_READERS[version](handle)
    except _UNREADABLE as exc:
        raise _unreadable("invalid_distance", f"{filename}: not a readable .npy array", exc) from None
    if dtype.kind != "f" or len(shape) != 2:
        raise ApiError(
            422, "invalid_distance", f"{filename}: expected a 2-D float array, got {dtype} {str(shape)[:80]}"
        )
    declared, present = math.prod(shape) * dtype.itemsize, len(data) - handle.tell()
    if declared != present:
        raise ApiError(
            422, "invalid_distance",
            f"{filename}: the header declares {str(shape)[:80]} {dtype} ({declared} bytes); {present} bytes follow",
        )  # fmt: skip
    height, width = shape
    _check_sides(width, height, filename, "invalid_distance")
    if width != 2 * height:
        raise ApiError(422, "invalid_distance", f"{filename}: a distance map must be 2:1 (got {width}×{height})")
    array = np.frombuffer(data, dtype, count=height * width, offset=handle.tell())
    valid = np.isfinite(array)
    if not valid.any() or (array[valid] <= 0).any():
        raise ApiError(422, "invalid_distance", f"{filename}: distances must be positive where finite")
    return CheckedUpload("distance", "application/octet-stream", width, height)


def _check_sides(width: int, height: int, filename: str, code: str = "invalid_image") -> None:
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise ApiError(422, code, f"{filename}: {width}×{height} is outside {MIN_SIDE}..{MAX_SIDE} pixels per side")


def _unreadable(code: str, what: str, exc: BaseException) -> ApiError:
    """PIL's and numpy's reason, cut short: it may quote the file's own (client-made) header."""
    reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return ApiError(422, code, f"{what} ({reason})")
