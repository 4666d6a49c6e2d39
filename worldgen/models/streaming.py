"""Fetch a job's models from an S3 mirror while the job runs, in the order its stages need them.

A SageMaker File-mode input copies every model (≈72 GB) before the container starts, so the first
stage waits for the last model. A `ModelStream` instead lists each model's folder under a mirror
(the layout `worldgen models mirror` writes: the models root's relative paths under a prefix) and
downloads it through one shared s3transfer manager: parallel ranged GETs for big files, small files
side by side, and models queued in the job's order so the first stage's files land first while the
rest keep streaming. `wait(name)` blocks until one model's files are all there.

Each file is written under a hidden `.{name}.part` and renamed when complete, so a folder never
shows a partial file under its final name (a later check, or a crashed run, sees it as missing).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from s3transfer.subscribers import BaseSubscriber

from worldgen.errors import ModelMissing
from worldgen.models.registry import ModelSpec, get_spec, missing_files
from worldgen.storage.s3 import parse_s3_url

log = logging.getLogger("worldgen.models")

MIB = 1 << 20
# S3 serves ≈50-100 MB/s per connection: 32 ranged GETs in flight fill a 10-20 Gbps NIC.
DEFAULT_CONCURRENCY = 32
# Parts small enough that a 5-10 GB shard spreads over every connection, large enough that the
# per-request latency (≈20-50 ms to first byte) stays a few percent of a part's transfer time.
DEFAULT_CHUNK_BYTES = 16 * MIB


@dataclass(frozen=True)
class StreamStats:
    """What a stream did (all times in seconds since `start()`)."""

    bytes: int
    """Bytes downloaded (files already present locally are not counted)."""
    files: int
    """Files downloaded and renamed into place."""
    seconds: float
    """Until the last model was settled (ready or failed), or until now while it runs."""
    ready_s: dict[str, float]
    """Seconds to ready per model (0.0 for models that were complete locally)."""
    model_bytes: dict[str, int]
    skipped: tuple[str, ...]
    """Models complete locally at `start()`: nothing fetched."""
    failed: dict[str, str]
    """Model → error message."""

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


@dataclass
class _Model:
    spec: ModelSpec
    folder: Path
    remaining: int = 0
    bytes: int = 0
    files: int = 0
    error: str | None = None
    ready_s: float | None = None
    skipped: bool = False
    done: bool = False


@dataclass(frozen=True)
class _Object:
    key: str
    size: int
    etag: str | None
    final: Path
    part: Path = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "part", self.final.with_name(f".{self.final.name}.part"))


class ModelStream:
    """Downloads the listed models from an S3 mirror into `root`, model by model, on a background
    thread; `wait(name)` hands a model's folder over as soon as its files are complete.

    Only the listed models' folders are fetched (other objects under the prefix, such as the
    mirror's marker, are left alone). Models already complete under `root` are skipped, and a file
    already present with the object's size is not fetched again, so a stream resumes.
    `client` should allow `max_concurrency` pooled connections (the default client does).
    """

    def __init__(
        self,
        url: str,
        root: Path,
        names: Sequence[str],
        client: Any = None,
        *,
        max_concurrency: int = DEFAULT_CONCURRENCY,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.root = Path(root)
        self.max_concurrency = max_concurrency
        self.chunk_bytes = chunk_bytes
        self.client = client if client is not None else _client(max_concurrency)
        pool = getattr(getattr(self.client.meta, "config", None), "max_pool_connections", None)
        if isinstance(pool, int) and pool < max_concurrency:
            log.warning("model stream: %d requests in flight share %d pooled connections", max_concurrency, pool)
        specs = [get_spec(name) for name in dict.fromkeys(names)]  # unknown names fail here
        self._models = {spec.name: _Model(spec, self.root / spec.relative_dir) for spec in specs}
        self._cond = threading.Condition()
        self._futures: list[Any] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self._started = 0.0
        self._finished: float | None = None

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def url(self, relative: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{relative}"

    def start(self) -> ModelStream:
        """Begin downloading (once); models complete locally are ready at once."""
        with self._cond:
            if self._thread is not None or self._closed:
                return self
            self._started = time.perf_counter()
            for model in self._models.values():
                if not missing_files(model.folder, model.spec):
                    model.skipped, model.done, model.ready_s = True, True, 0.0
            self._thread = threading.Thread(target=self._run, name="worldgen-model-stream", daemon=True)
            self._thread.start()
        return self

    def wait(self, name: str, timeout: float | None = None) -> Path:
        """Block until `name`'s files are all under `root` and return its folder.

        Raises ModelMissing if the model is not streamed, not in the mirror, or failed to download
        (the message names the S3 key and the error), and TimeoutError after `timeout` seconds.
        """
        model = self._models.get(name)
        if model is None:
            get_spec(name)  # unknown names: the registry's KeyError
            raise ModelMissing(
                f"model {name!r} is not among the streamed models ({', '.join(self._models) or 'none'})",
                details={"model": name},
            )
        self.start()
        with self._cond:
            if not self._cond.wait_for(lambda: model.done or self._closed, timeout):
                raise TimeoutError(f"model {name!r} did not arrive from {self.url()} within {timeout} s")
            if model.error is not None:
                raise ModelMissing(model.error, details={"model": name, "url": self.url(model.spec.relative_dir)})
            if model.ready_s is None:
                raise ModelMissing(
                    f"model {name!r}: the stream from {self.url()} was closed before it arrived",
                    details={"model": name},
                )
            return model.folder

    def stats(self) -> StreamStats:
        with self._cond:
            models = self._models.values()
            end = self._finished or time.perf_counter()
            return StreamStats(
                bytes=sum(m.bytes for m in models),
                files=sum(m.files for m in models),
                seconds=end - self._started if self._started else 0.0,
                ready_s={m.spec.name: m.ready_s for m in models if m.ready_s is not None},
                model_bytes={m.spec.name: m.bytes for m in models},
                skipped=tuple(m.spec.name for m in models if m.skipped),
                failed={m.spec.name: m.error for m in models if m.error is not None},
            )

    def close(self, timeout: float = 30.0) -> None:
        """Cancel what is in flight (partial files are removed) and wait for the thread."""
        with self._cond:
            self._closed = True
            futures = list(self._futures)
            self._cond.notify_all()
        for future in futures:
            future.cancel()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> ModelStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The background thread: list each model, queue its files; callbacks settle the models.

    def _run(self) -> None:
        from boto3.s3.transfer import TransferConfig, create_transfer_manager

        config = TransferConfig(
            multipart_threshold=self.chunk_bytes,
            multipart_chunksize=self.chunk_bytes,
            max_concurrency=self.max_concurrency,
            preferred_transfer_client="classic",  # the subscribers below are s3transfer's
        )
        manager = create_transfer_manager(self.client, config)
        try:
            for model in self._models.values():
                if self._closed:
                    break
                if not model.done:
                    self._queue(manager, model)
            for future in list(self._futures):
                with contextlib.suppress(Exception):  # recorded by the subscriber (or cancelled)
                    future.result()
        except Exception as exc:  # never leave a waiter hanging
            log.exception("model stream from %s failed", self.url())
            with self._cond:
                for model in self._models.values():
                    if not model.done:
                        model.error = f"model {model.spec.name!r}: streaming from {self.url()} failed: {exc}"
                        model.done = True
        finally:
            manager.shutdown(cancel=self._closed)
            with self._cond:
                self._finished = time.perf_counter()
                self._cond.notify_all()

    def _queue(self, manager: Any, model: _Model) -> None:
        folder_prefix = f"{self.prefix}{model.spec.relative_dir}/"
        try:
            objects = self._list(folder_prefix)
        except Exception as exc:
            self._settle(model, f"model {model.spec.name!r}: cannot list s3://{self.bucket}/{folder_prefix}: {exc}")
            return
        if not objects:
            self._settle(
                model,
                f"model {model.spec.name!r} ({model.spec.description}) is not in the mirror: "
                f"no objects under s3://{self.bucket}/{folder_prefix}",
            )
            return
        todo = [o for o in objects if not (o.final.is_file() and o.final.stat().st_size == o.size)]
        with self._cond:
            model.remaining = len(todo)
        if not todo:
            self._settle(model)
            return
        for item in todo:
            item.part.parent.mkdir(parents=True, exist_ok=True)
            future = manager.download(self.bucket, item.key, str(item.part), subscribers=[_File(self, model, item)])
            with self._cond:
                self._futures.append(future)
                closed = self._closed
            if closed:  # close() took its list of futures before this one
                future.cancel()

    def _list(self, folder_prefix: str) -> list[_Object]:
        objects = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder_prefix):
            for item in page.get("Contents", []):
                key, relative = item["Key"], item["Key"][len(self.prefix) :]
                if not key.endswith("/") and ".." not in Path(relative).parts:
                    objects.append(_Object(key, int(item["Size"]), item.get("ETag"), self.root / relative))
        return objects

    def _file_done(self, model: _Model, item: _Object, error: Exception | None) -> None:
        """Called on a transfer thread once a file's download ended: rename it into place or
        remove the partial file, and settle the model after its last file."""
        if error is None:
            try:
                item.part.replace(item.final)
            except OSError as exc:
                error = exc
        if error is not None:
            item.part.unlink(missing_ok=True)
        with self._cond:
            if error is None:
                model.files += 1
            elif model.error is None and self._closed:
                model.error = f"model {model.spec.name!r}: the stream from {self.url()} was closed before it arrived"
            elif model.error is None:
                model.error = (
                    f"model {model.spec.name!r}: could not download s3://{self.bucket}/{item.key} "
                    f"to {item.final}: {type(error).__name__}: {error}"
                )
            model.remaining -= 1
            last = model.remaining == 0
        if last:
            self._settle(model)

    def _settle(self, model: _Model, error: str | None = None) -> None:
        """Mark a model ready, or failed with the first error seen or the required files missing."""
        missing = [] if error or model.error else missing_files(model.folder, model.spec)
        with self._cond:
            model.error = model.error or error
            if model.error is None and missing:
                keys = [f"s3://{self.bucket}/{self.prefix}{p.relative_to(self.root)}" for p in missing]
                model.error = f"model {model.spec.name!r} is incomplete in the mirror: missing {', '.join(keys)}"
            if model.error is None:
                model.ready_s = time.perf_counter() - self._started
                log.info(
                    "model %s ready after %.1f s (%.0f MB fetched)", model.spec.name, model.ready_s, model.bytes / 1e6
                )
            else:
                log.warning("model stream: %s", model.error)
            model.done = True
            self._cond.notify_all()


class _File(BaseSubscriber):
    """s3transfer subscriber for one object: hands it the listed size and ETag (no HEAD per file;
    ranged GETs carry If-Match), counts bytes, and reports the end of the transfer."""

    def __init__(self, stream: ModelStream, model: _Model, item: _Object) -> None:
        self.stream, self.model, self.item = stream, model, item

    def on_queued(self, future: Any, **_: Any) -> None:
        future.meta.provide_transfer_size(self.item.size)
        if self.item.etag:
            future.meta.provide_object_etag(self.item.etag)

    def on_progress(self, future: Any, bytes_transferred: int, **_: Any) -> None:
        with self.stream._cond:
            self.model.bytes += bytes_transferred

    def on_done(self, future: Any, **_: Any) -> None:
        try:
            future.result()
            error: Exception | None = None
        except Exception as exc:  # CancelledError included
            error = exc
        self.stream._file_done(self.model, self.item, error)


def _client(max_concurrency: int) -> Any:
    """The default S3 client (boto3's environment), with a connection per request in flight."""
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=max(10, max_concurrency),
    )
    return boto3.client("s3", config=config)
