"""The model runtime a job runs with: device, precision, model files, and who is resident.

Components are loaded when a step starts and released when it ends (`hold`), so peak memory is
one component plus activations. The registry of resident models is the single place that
enforces that, and it keeps the peak set for the manifest and for tests.

It also owns the job's `Prefetcher`: `prefetch(*names)` queues models a later step will load, so
their files are read into the page cache while the current step computes.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch

from worldgen.models.device import default_device
from worldgen.models.precision import Precision, PrecisionChoice, resolve_precision
from worldgen.models.prefetch import Prefetcher, PrefetchStats, weight_files
from worldgen.models.registry import MODELS
from worldgen.models.resolver import ModelResolver

T = TypeVar("T")

# Kinds of which at most one instance may be resident at any time.
EXCLUSIVE_KINDS = frozenset({"flux-transformer", "t5"})


class ResidencyError(RuntimeError):
    """A second copy of an exclusive kind of model was about to be loaded."""


@dataclass
class ModelRuntime:
    resolver: ModelResolver
    device: torch.device
    precision: PrecisionChoice
    resident: dict[str, str] = field(default_factory=dict)
    """key → kind of every model currently loaded."""
    peak_resident: list[str] = field(default_factory=list)
    load_seconds: dict[str, float] = field(default_factory=dict)
    loads: dict[str, int] = field(default_factory=dict)
    """How many times each model was loaded (the Fill transformer: once per world)."""
    max_resident_per_kind: dict[str, int] = field(default_factory=dict)
    prefetcher: Prefetcher | None = field(default=None, repr=False)
    """Created by the first `prefetch`; a closed one is replaced by the next `prefetch`."""

    @classmethod
    def create(
        cls,
        models_dir: Path,
        *,
        device: str | torch.device | None = None,
        precision: Precision | str = Precision.AUTO,
        allow_download: bool = False,
        hf_token: str | None = None,
    ) -> ModelRuntime:
        from worldgen.logs import quiet_model_libraries

        quiet_model_libraries()
        dev = torch.device(device) if device else default_device()
        return cls(
            resolver=ModelResolver(Path(models_dir), allow_download=allow_download, hf_token=hf_token),
            device=dev,
            precision=resolve_precision(precision, dev),
        )

    @property
    def dtype(self) -> torch.dtype:
        return self.precision.compute_dtype

    def path(self, name: str) -> Path:
        return self.resolver.resolve(name)

    def prefetch(self, *names: str) -> list[Path]:
        """Queue the weight files of these models (registry names) for reading in the background,
        in the order given; returns the files queued. A model that is unknown or not complete
        under the models root is skipped: this never downloads and never raises."""
        files: list[Path] = []
        for name in names:
            spec = MODELS.get(name)
            try:
                folder = self.resolver.local(name) if spec is not None else None
                files += weight_files(folder, spec) if spec is not None and folder is not None else []
            except OSError:
                continue
        if files:
            if self.prefetcher is None or self.prefetcher.closed:
                self.prefetcher = Prefetcher()
            self.prefetcher.prefetch(files)
        return files

    def prefetch_stats(self) -> dict[str, int | float]:
        """What the prefetcher did (all zero if nothing was ever queued)."""
        return (self.prefetcher.stats if self.prefetcher is not None else PrefetchStats()).as_dict()

    def close(self) -> None:
        """Stop background reading (at the end of a job); the runtime stays usable."""
        if self.prefetcher is not None:
            self.prefetcher.close()

    @contextmanager
    def hold(self, key: str, kind: str, load: Callable[[], T]) -> Iterator[T]:
        """Load a model for the duration of a `with` block, then free it."""
        if kind in EXCLUSIVE_KINDS and kind in self.resident.values():
            other = next(k for k, v in self.resident.items() if v == kind)
            raise ResidencyError(f"cannot load {key!r}: {other!r} ({kind}) is still resident")
        started = time.perf_counter()
        model = load()
        self.load_seconds[key] = self.load_seconds.get(key, 0.0) + time.perf_counter() - started
        self.resident[key] = kind
        self.loads[key] = self.loads.get(key, 0) + 1
        count = sum(1 for k in self.resident.values() if k == kind)
        self.max_resident_per_kind[kind] = max(self.max_resident_per_kind.get(kind, 0), count)
        if len(self.resident) > len(self.peak_resident):
            self.peak_resident = sorted(self.resident)
        try:
            yield model
        finally:
            del self.resident[key]
            release(model)
            del model
            free_memory(self.device)


def release(model: object) -> None:
    """Drop a module's storage even if callers still hold a reference to the object."""
    if not isinstance(model, torch.nn.Module):
        return
    try:
        model.to_empty(device=torch.device("meta"))
        return
    except (RuntimeError, NotImplementedError, TypeError):
        pass
    # Tensor subclasses (torchao's fp8 weights) cannot move to meta. Left to the collector, a
    # module in a reference cycle (cache hooks) kept them on the GPU until the next collection,
    # i.e. through the whole next stage; so the module lets go of them here.
    for module in model.modules():
        module._parameters.clear()
        module._buffers.clear()


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
