"""Analytic scenes for geometry tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

from worldgen.geometry.sphere import panorama_rays

BOX = np.array([3.0, 2.0, 1.5])  # half extents of a box room (x, y, z)


def box_room(height: int, width: int, half_extents: np.ndarray = BOX) -> np.ndarray:
    """Ray distance from the centre of a box room to its walls."""
    rays = panorama_rays(height, width).astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.min(half_extents / np.abs(rays), axis=-1).astype(np.float32)


def gradient_rgb(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 127 // (width + height)], -1).astype(np.uint8)


def boundary_edges(faces: np.ndarray) -> np.ndarray:
    """Undirected edges used by exactly one face."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).astype(np.int64), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    return unique[counts == 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_service(data: Path, models: Path) -> Iterator[str]:
    """`worldgen serve` in a subprocess on its embedded default; yields its URL once ready."""
    port = free_port()
    env = {**os.environ, "WORLDGEN_DATA_DIR": str(data), "WORLDGEN_MODELS_DIR": str(models)}
    log = (data / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "worldgen", "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        process.kill()
        log.close()
        raise AssertionError((data / "serve.log").read_text())
    try:
        yield url
    finally:
        process.terminate()
        process.wait(30)
        log.close()


@contextmanager
def app_in_thread(app: object, **config: object) -> Iterator[int]:
    """`app` under uvicorn on a free 127.0.0.1 port, in a thread (the TestClient hands an app the
    whole body at once; streaming, stalls and raw sockets need a real server). Yields the port;
    `config`: more uvicorn.Config arguments."""
    import threading

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **config))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def read_response(connection: socket.socket, response: bytes = b"") -> tuple[int, dict]:
    """Read a raw HTTP response with a JSON body (after `response`, what already arrived)."""
    connection.settimeout(5)
    try:
        while not (b"\r\n\r\n" in response and response.rstrip().endswith(b"}")):
            data = connection.recv(65536)
            if not data:
                break
            response += data
    except (TimeoutError, ConnectionResetError):
        pass
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), response[:200]
    return int(head.split()[1]), json.loads(body)
