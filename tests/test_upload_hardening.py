"""Uploads under hostile input (issue 16): size limits while the body streams, decompression bombs,
lying .npy headers, server paths in messages and ids that must never reach the database."""

from __future__ import annotations

import io
import socket
import struct
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.helpers import app_in_thread, read_response
from tests.test_api import assert_error, png
from worldgen.api.app import create_app
from worldgen.config import Settings

PNG_MAGIC, NPY_MAGIC = b"\x89PNG\r\n\x1a\n", b"\x93NUMPY"
LIMITS = {"upload_max_bytes": 64 * 1024, "upload_max_npy_bytes": 128 * 1024}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'jobs.db'}").model_copy(
        update=LIMITS
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, run_worker=False)) as test_client:
        yield test_client


def upload(client: TestClient, body: bytes, name: str = "a.png", **data: str):
    return client.post("/v1/uploads", files={"file": (name, body)}, data=data)


def multipart(*parts: tuple[str, str | None, bytes], boundary: str = "b0undary") -> bytes:
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


FORM = {"content-type": "multipart/form-data; boundary=b0undary"}


# ---- 1. size limits apply while the body streams ----------------------------------------------


@contextmanager
def live_server(settings: Settings) -> Iterator[int]:
    with app_in_thread(create_app(settings, run_worker=False)) as port:
        yield port


def stream_upload(port: int, magic: bytes, total: int) -> tuple[int, dict, int]:
    """POST a chunked multipart upload of `total` bytes, 64 KiB at a time, stopping as soon as the
    server answers or hangs up. Returns the status, the JSON body and how many bytes were sent."""
    head = multipart(("file", "big.bin", b"")).split(b"\r\n\r\n")[0] + b"\r\n\r\n" + magic
    chunk = b"\0" * 65536
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            b"POST /v1/uploads HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=b0undary\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(head):x}\r\n".encode() + head + b"\r\n"
        )
        response = b""
        connection.settimeout(0.01)
        while sent < total and not response:
            try:
                connection.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
                response = connection.recv(65536)
            except (TimeoutError, BlockingIOError):
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        if sent >= total:
            tail = b"\r\n--b0undary--\r\n"
            connection.sendall(f"{len(tail):x}\r\n".encode() + tail + b"\r\n0\r\n\r\n")
        status, body = read_response(connection, response)
    return status, body, sent


@pytest.mark.parametrize(("magic", "limit"), [(PNG_MAGIC, "upload_max_bytes"), (NPY_MAGIC, "upload_max_npy_bytes")])
def test_an_upload_over_the_limit_is_cut_off_while_it_streams(settings: Settings, magic: bytes, limit: str) -> None:
    """A 2 GB upload used to be written to /tmp in full before its 413; now the answer comes once
    the kind's limit (sniffed from the first bytes) is passed, while the client has MBs left to send."""
    total = 48 << 20
    with live_server(settings) as port:
        status, body, sent = stream_upload(port, magic, total)
    assert sent < 16 << 20, f"the server read {sent} bytes before answering"
    assert status == 413 and body["error"]["code"] == "too_large", body
    assert str(LIMITS[limit]) in body["error"]["message"]


def test_a_content_length_over_the_limit_is_refused_before_the_body(settings: Settings) -> None:
    with live_server(settings) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        started = time.monotonic()
        connection.sendall(
            b"POST /v1/uploads HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=b0undary\r\n"
            b"Content-Length: 2000000000\r\n\r\n"
        )
        status, body = read_response(connection)
    assert status == 413 and body["error"]["code"] == "too_large"
    assert time.monotonic() - started < 3


def test_an_upload_within_the_limit_with_its_kind_after_the_file(client: TestClient) -> None:
    """The page sends the file first and the kind after it: the kind is still honoured."""
    body = multipart(("file", "p.png", png(128, 64)), ("kind", None, b"panorama"))
    response = client.post("/v1/uploads", content=body, headers=FORM)
    assert response.status_code == 201, response.text
    assert (response.json()["kind"], response.json()["filename"]) == ("panorama", "p.png")


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (multipart(("file", "a.png", png())).removesuffix(b"--b0undary--\r\n"), FORM, 400),  # cut short
        (multipart(("file", "a.png", png()), ("file", "b.png", png())), FORM, 422),  # two files
        (multipart(("kind", None, b"image")), FORM, 422),  # no file
        (multipart(("file", "a.png", png()), ("kind", None, b"x" * 5000)), FORM, 422),  # a long kind
        (multipart(("file", "a.png", png())), {"content-type": "multipart/form-data"}, 400),  # no boundary
        (b'{"file": "x"}', {"content-type": "application/json"}, 422),
    ],
)
def test_malformed_forms_are_4xx(client: TestClient, body: bytes, headers: dict, status: int) -> None:
    assert_error(client.post("/v1/uploads", content=body, headers=headers), status)


# ---- 2. images: dimensions from the header before any decoding --------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A complete, tiny PNG whose header claims width × height pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_MAGIC + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(png(16, 16, fmt="JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize("make", [png_claiming, jpeg_claiming])
def test_a_decompression_bomb_is_refused_by_its_header(client: TestClient, make) -> None:
    body = make(65535, 32767)
    assert len(body) < 1000
    error = assert_error(upload(client, body), 422, "invalid_image")
    assert "65535×32767" in error["message"]


def test_pils_own_bomb_limit_is_a_4xx(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Should PIL's pixel limit ever be below ours, its DecompressionBombError is a 413, not a 500."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    error = assert_error(upload(client, png(64, 48)), 413, "too_large")
    assert "64×48" in error["message"]


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pils_bomb_warning_as_an_error_is_a_4xx(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    assert_error(upload(client, png(64, 48)), 413, "too_large")


@pytest.mark.parametrize(
    "body",
    [
        png(64, 48, noise=True)[:2000],
        png(64, 48, fmt="JPEG", noise=True)[:1500],
        png(64, 48, fmt="JPEG", noise=True)[:600] + b"\xff\xd9",
    ],
    ids=["truncated-png", "truncated-jpeg", "jpeg-cut-at-its-scan"],
)
def test_truncated_images_are_422(client: TestClient, body: bytes) -> None:
    assert_error(upload(client, body), 422, "invalid_image")


# ---- 3. .npy: the header is checked against the bytes before anything is allocated -------------


def npy(
    shape: tuple[int, ...], descr: str = "<f4", body: bytes | None = None, version: tuple[int, int] = (1, 0)
) -> bytes:
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header) if version == (1, 0) else np.lib.format.write_array_header_2_0(
        buffer, header
    )
    if body is None:
        body = b"\0" * (int(np.prod(shape)) * np.dtype(descr).itemsize)
    return buffer.getvalue() + body


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (npy((100_000, 200_000), "<f8", b"\0" * 64), "bytes"),  # was a MemoryError → 500
        (npy((2**40, 2**41), "<f8", b"\0" * 64), "bytes"),
        (npy((32, 64), body=b"\0" * (32 * 64 * 4 - 1)), "bytes"),  # one byte short
        (npy((32, 64), body=b"\0" * (32 * 64 * 4 + 8)), "bytes"),  # trailing bytes
        (npy((32, 64), "<c8"), "float"),
        (npy((32, 64), "|O8", b""), "float"),
        (npy((32, 64), "<i4"), "float"),
        (npy((32, 64), "<f4", version=(2, 0))[:6] + b"\x09\x00" + b"\0" * 80, "version"),
    ],
)
def test_npy_headers_that_lie_are_422(client: TestClient, body: bytes, words: str) -> None:
    error = assert_error(upload(client, body, "d.npy"), 422, "invalid_distance")
    assert words in error["message"]


def test_a_version_2_npy_is_accepted(client: TestClient) -> None:
    body = npy((32, 64), version=(2, 0), body=np.ones((32, 64), np.float32).tobytes())
    response = upload(client, body, "d.npy")
    assert response.status_code == 201 and response.json()["kind"] == "distance", response.text


def test_an_npy_header_is_checked_before_allocating(tmp_path: Path) -> None:
    """A header that claims 4096×8192 float32 (128 MiB) over 64 bytes allocates nothing of that size."""
    settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'jobs.db'}")
    with TestClient(create_app(settings, run_worker=False)) as client:
        tracemalloc.start()
        try:
            response = upload(client, npy((4096, 8192), "<f4", b"\0" * 64), "d.npy")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert_error(response, 422, "invalid_distance")
    assert peak < 32 << 20, f"peak {peak >> 20} MiB"


# ---- 4. messages never show server paths -----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "name"),
    [
        (b"\xff\xd8\xff" + b"x" * 50, "a.jpg"),
        (PNG_MAGIC + b"garbage" * 10, "a.png"),
        (png(64, 48, fmt="JPEG")[:300], "a.jpg"),
        (NPY_MAGIC + b"\x01\x00" + b"\xff" * 30, "d.npy"),
        (npy((32, 64), "<f4", b"\0" * 10), "d.npy"),
        (b"\0" * (LIMITS["upload_max_bytes"] + 1), "a.png"),
    ],
)
def test_error_messages_never_show_server_paths(client: TestClient, settings: Settings, body: bytes, name: str) -> None:
    response = upload(client, body, name)
    assert 400 <= response.status_code < 500, response.text
    text = response.text
    for path in (tempfile.gettempdir(), "worldgen-upload", str(settings.data_dir), str(settings.data_dir.resolve())):
        assert path not in text, text


# ---- 5. upload ids are checked by pattern before the database ----------------------------------


@pytest.mark.parametrize("upload_id", ["%00", "abc%00def", "nope", "A" * 32, "g" * 32, "0" * 31, "0" * 33, "%20" * 32])
def test_upload_ids_are_checked_before_the_database(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, upload_id: str
) -> None:
    store = client.app.state.worldgen.store

    def untouchable(upload_id: str) -> None:
        raise AssertionError(f"the database was asked for {upload_id!r}")

    monkeypatch.setattr(store, "get_upload", untouchable)
    error = assert_error(client.get(f"/v1/uploads/{upload_id}"), 404, "not_found")
    assert "\x00" not in error["message"]


def test_a_nul_byte_upload_id_is_404_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_url)
    with TestClient(create_app(settings, run_worker=False)) as client:
        assert_error(client.get("/v1/uploads/%00"), 404, "not_found")
        assert_error(client.get(f"/v1/uploads/{'0' * 32}"), 404, "not_found")
        made = upload(client, png()).json()
        assert client.get(f"/v1/uploads/{made['id']}").json() == made
