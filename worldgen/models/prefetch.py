"""Read the next stage's model files into the page cache while the current stage computes.

A job's loads read tens of GB from disk (from a cold page cache on a fresh SageMaker job) while
the disk sits idle through long stretches of GPU work: the panorama's denoising, the three
inpaintings, depth. The `Prefetcher` reads queued files sequentially on a daemon thread into one
reusable buffer, so that they land in the OS page cache; the later load (safetensors mmap,
torch.load, onnxruntime) then reads memory. Nothing it does can fail a job: a file it cannot read
is counted and skipped, a file that would leave less than the reserve of available memory is
skipped, and `close()` stops it between two chunks.
"""

from __future__ import annotations

import atexit
import json
import logging
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Protocol

from worldgen.models.registry import ModelSpec

log = logging.getLogger("worldgen.models")

GIB = 1 << 30
CHUNK_BYTES = 16 << 20
RESERVE_FRACTION = 0.25
RESERVE_MIN_BYTES = 4 * GIB
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".onnx", ".bin")

# Sub-folders of a FLUX folder, in the order worth reading them: the transformer (the largest
# load) first, then the text encoders (CLIP-L, then T5), then the VAE. A stage loads the text
# encoders first, but it reads them itself at once; the prefetcher reads ahead of it.
FLUX_ORDER = ("transformer", "text_encoder", "text_encoder_2", "vae")


class Stream(Protocol):
    """What the prefetcher reads from: an unbuffered binary file."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...

    def __enter__(self) -> Stream: ...

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None, /
    ) -> object: ...


MemInfo = Callable[[], dict[str, int]]
Opener = Callable[[Path], Stream]


def read_meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes ("MemTotal", "MemAvailable", ...)."""
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, value = line.partition(":")
        fields = value.split()
        if fields and fields[0].isdigit():
            info[name] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
    return info


def _open(path: Path) -> Stream:
    return path.open("rb", buffering=0)


@dataclass(frozen=True)
class PrefetchStats:
    """What the prefetcher did (the manifest's "prefetch")."""

    queued: int = 0
    """Files queued (each path once)."""
    files: int = 0
    """Files read to the end."""
    bytes: int = 0
    """Bytes read, partly read files included."""
    skipped: int = 0
    """Files not read because memory was short."""
    failed: int = 0
    """Files that could not be read (missing, no permission, ...)."""
    seconds: float = 0.0
    """Time spent reading (the thread's busy time, not its idle time)."""

    def as_dict(self) -> dict[str, int | float]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


class Prefetcher:
    """Reads queued files, in order, into the page cache on a daemon thread.

    `meminfo` and `opener` are the hooks tests replace. Before each file, the file is skipped if
    MemAvailable minus its size would fall below the reserve: `reserve_fraction` of MemTotal or
    `reserve_min_bytes`, whichever is larger (page cache counts as available, so what was read
    before does not stop later reads; what the job itself allocates does).
    """

    def __init__(
        self,
        *,
        chunk_bytes: int = CHUNK_BYTES,
        meminfo: MemInfo = read_meminfo,
        opener: Opener = _open,
        reserve_fraction: float = RESERVE_FRACTION,
        reserve_min_bytes: int = RESERVE_MIN_BYTES,
    ) -> None:
        self.chunk_bytes = chunk_bytes
        self.meminfo = meminfo
        self.opener = opener
        self.reserve_fraction = reserve_fraction
        self.reserve_min_bytes = reserve_min_bytes
        self._queue: deque[Path] = deque()
        self._seen: set[Path] = set()
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False
        self._thread: threading.Thread | None = None
        self._stats = PrefetchStats()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def stats(self) -> PrefetchStats:
        with self._cond:
            return self._stats

    def prefetch(self, paths: Iterable[Path]) -> None:
        """Queue files behind those already queued; a path queued before is not queued again."""
        with self._cond:
            if self._closed:
                return
            fresh = [Path(p) for p in paths if Path(p) not in self._seen]
            if not fresh:
                return
            self._seen.update(fresh)
            self._queue.extend(fresh)
            self._count(queued=len(fresh))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="worldgen-prefetch", daemon=True)
                self._thread.start()
                atexit.register(self.close)
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the queue is done (or the prefetcher closed); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._closed or not (self._queue or self._busy), timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop reading (within one chunk), drop the queue and wait for the thread."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            atexit.unregister(self.close)
            if thread is not threading.current_thread():
                thread.join(timeout)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count(self, **deltas: float) -> None:
        """Add to the stats (the caller holds the lock)."""
        self._stats = replace(self._stats, **{k: getattr(self._stats, k) + v for k, v in deltas.items()})

    def _run(self) -> None:
        buffer = memoryview(bytearray(self.chunk_bytes))
        while True:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._closed or bool(self._queue))
                if self._closed:
                    return
                path = self._queue.popleft()
                self._busy = True
            started = time.perf_counter()
            outcome = self._read(path, buffer)
            with self._cond:
                self._count(seconds=time.perf_counter() - started, **({outcome: 1} if outcome else {}))

    def _read(self, path: Path, buffer: memoryview) -> str | None:
        """Read one file; returns the stat it counts towards (None when stopped part-way)."""
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):  # a directory, or a FIFO that would block the thread
                raise OSError(f"not a regular file: {path}")
            size = info.st_size
            if not self._room_for(size):
                log.debug("prefetch: memory is short, skipping %s (%d bytes)", path, size)
                return "skipped"
            with self.opener(path) as stream:
                while not self._closed:
                    count = stream.readinto(buffer)
                    if not count:
                        return "files"
                    with self._cond:
                        self._count(bytes=count)
            return None
        except Exception as exc:  # a prefetch never fails the job
            log.debug("prefetch: cannot read %s: %s", path, exc)
            return "failed"

    def _room_for(self, size: int) -> bool:
        try:
            info = self.meminfo()
            total, available = info["MemTotal"], info["MemAvailable"]
        except Exception:  # no meminfo (not Linux): do not risk it
            return False
        reserve = max(int(total * self.reserve_fraction), self.reserve_min_bytes)
        return available - size >= reserve


def weight_files(folder: Path, spec: ModelSpec) -> list[Path]:
    """The weight files a model's loader reads, in the order worth prefetching them.

    Taken from the spec's required files (the first present of alternatives, as the resolver
    checks them): weight files as they are, a sharded checkpoint's index expanded to its shards in
    name order; then ordered by `FLUX_ORDER` for the sub-folders it names (a FLUX folder's root
    may hold single-file checkpoints that no stage reads: they are not listed).
    """
    files: list[Path] = []
    for requirement in spec.required:
        options = (requirement,) if isinstance(requirement, str) else requirement
        present = next((folder / option for option in options if (folder / option).is_file()), None)
        if present is None:
            continue
        if present.name.endswith(".index.json"):
            try:
                shards = json.loads(present.read_text())["weight_map"].values()
            except (OSError, ValueError, KeyError, AttributeError):
                continue
            files += sorted({present.parent / shard for shard in shards})
        elif present.name.endswith(WEIGHT_SUFFIXES):
            files.append(present)

    def rank(path: Path) -> int:
        top = path.relative_to(folder).parts[0]
        return FLUX_ORDER.index(top) if top in FLUX_ORDER else len(FLUX_ORDER)

    return sorted(dict.fromkeys(files), key=rank)
