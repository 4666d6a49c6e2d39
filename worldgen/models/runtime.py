"""The model runtime a job runs with: device, precision, model files, and who is resident.

Components are loaded when a step starts and released when it ends (`hold`), so peak memory is
one component plus activations. The registry of resident models is the single place that
enforces that, and it keeps the peak set for the manifest and for tests.

It also owns the job's `Prefetcher`: `prefetch(*names)` queues models a later step will load, so
their files are read into the page cache while the current step computes.

A warm worker runs many jobs on one runtime and gives it `keep_bytes`: a model whose hold ends is
then parked (left where it is, on the device) instead of released, while the parked models fit
in that budget (least recently used go first), and the next hold of the same key takes it back
without loading. `warm_budget` sizes the budget so parked models never crowd out a stage's working
set: on a 24 GB card it is 0 (every job loads, from the page cache); on an H200 everything stays.
"""

from __future__ import annotations

import gc
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, cast

import torch

from worldgen.models.device import default_device
from worldgen.models.precision import Precision, PrecisionChoice, resolve_precision
from worldgen.models.prefetch import Prefetcher, PrefetchStats, weight_files
from worldgen.models.registry import MODELS
from worldgen.models.resolver import ModelResolver

T = TypeVar("T")

# Kinds of which at most one instance may be resident at any time.
EXCLUSIVE_KINDS = frozenset({"flux-transformer", "t5"})


WORKING_SET_BYTES = 22 << 30
"""Free device memory a whole world needs with nothing parked: the layered world's measured peak
on an A10G-sized card (22.2 GiB at the driver with the 1.2 GiB CUDA context, fp8,
bench/RESULTS.md) less the context, plus a margin. Parked models may use what is free beyond it."""
WARM_BUDGET_ENV = "WORLDGEN_WARM_BUDGET_GIB"


class ResidencyError(RuntimeError):
    """A second copy of an exclusive kind of model was about to be loaded."""


@dataclass
class Parked:
    kind: str
    model: object
    nbytes: int


def torch_modules(model: object) -> list[torch.nn.Module]:
    """The torch modules a loaded model is or holds (attributes two levels deep: a predictor's
    graphs' modules, spandrel's descriptor's model)."""
    modules: dict[int, torch.nn.Module] = {}

    def collect(obj: object, depth: int) -> None:
        if isinstance(obj, torch.nn.Module):
            modules[id(obj)] = obj
        elif depth > 0 and hasattr(obj, "__dict__"):
            for value in vars(obj).values():
                collect(value, depth - 1)

    collect(model, 2)
    return list(modules.values())


def model_bytes(model: object) -> int:
    """Memory a loaded model holds: its own `resident_bytes` if it says, else the parameters and
    buffers of its torch modules."""
    declared = getattr(model, "resident_bytes", None)
    if isinstance(declared, int):
        return declared
    modules = torch_modules(model)
    tensors = {id(t): t for m in modules for t in [*m.parameters(), *m.buffers()] if t.device.type != "meta"}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def warm_budget(device: torch.device, environ: dict[str, str] | None = None) -> int:
    """Bytes of models a warm worker keeps between holds: WORLDGEN_WARM_BUDGET_GIB if set; on a
    GPU what is free (when the runtime is made) beyond WORKING_SET_BYTES: 0 on a 24 GB card,
    where each job reloads (from the page cache), about 115 GiB on an H200; on the CPU a quarter
    of the host's memory."""
    value = (os.environ if environ is None else environ).get(WARM_BUDGET_ENV)
    if value:
        return int(float(value) * (1 << 30))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)  # free, not total: another process's share is not ours
        return max(0, free - WORKING_SET_BYTES)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


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
    keep_bytes: int = 0
    """Budget for parked models (0: every model is released when its hold ends)."""
    parked: OrderedDict[str, Parked] = field(default_factory=OrderedDict, repr=False)
    """key → a model kept loaded between holds, least recently used first."""
    reuses: dict[str, int] = field(default_factory=dict)
    """How many holds took a parked model instead of loading it."""

    @classmethod
    def create(
        cls,
        models_dir: Path,
        *,
        device: str | torch.device | None = None,
        precision: Precision | str = Precision.AUTO,
        allow_download: bool = False,
        hf_token: str | None = None,
        keep_bytes: int = 0,
    ) -> ModelRuntime:
        from worldgen.logs import quiet_model_libraries

        quiet_model_libraries()
        dev = torch.device(device) if device else default_device()
        return cls(
            resolver=ModelResolver(Path(models_dir), allow_download=allow_download, hf_token=hf_token),
            device=dev,
            precision=resolve_precision(precision, dev),
            keep_bytes=keep_bytes,
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
        """Load a model (or take it back from the parked ones) for the duration of a `with`
        block; then free it, or park it where the warm budget allows."""
        if kind in EXCLUSIVE_KINDS and kind in self.resident.values():
            other = next(k for k, v in self.resident.items() if v == kind)
            raise ResidencyError(f"cannot load {key!r}: {other!r} ({kind}) is still resident")
        parked = self.parked.pop(key, None)
        model: T
        if parked is not None:
            model = cast(T, parked.model)
            self.reuses[key] = self.reuses.get(key, 0) + 1
        else:
            started = time.perf_counter()
            model = load()
            self.load_seconds[key] = self.load_seconds.get(key, 0.0) + time.perf_counter() - started
            self.loads[key] = self.loads.get(key, 0) + 1
        self.resident[key] = kind
        count = sum(1 for k in self.resident.values() if k == kind)
        self.max_resident_per_kind[kind] = max(self.max_resident_per_kind.get(kind, 0), count)
        if len(self.resident) > len(self.peak_resident):
            self.peak_resident = sorted(self.resident)
        try:
            yield model
        except BaseException:
            del self.resident[key]
            self._release(model)  # a failed or cancelled step may leave a model half-modified
            raise
        del self.resident[key]
        if not self._park(key, kind, model):
            self._release(model)

    def _park(self, key: str, kind: str, model: object) -> bool:
        nbytes = model_bytes(model)
        if not self.keep_bytes or nbytes > self.keep_bytes:
            return False
        while self.parked and sum(p.nbytes for p in self.parked.values()) + nbytes > self.keep_bytes:
            _, oldest = self.parked.popitem(last=False)
            self._release(oldest.model)
        forget = getattr(model, "forget_inputs", None)
        if callable(forget):
            forget()  # ZIM's features of the last image: parked memory is weights only
        self.parked[key] = Parked(kind, model, nbytes)
        return True

    def _release(self, model: object) -> None:
        release(model)
        del model
        free_memory(self.device)

    def begin_job(self) -> None:
        """Start a job's accounting (loads, reuses, load seconds, peak residency, the GPU's peak)
        afresh; parked models stay. A warm worker runs many jobs on one runtime."""
        self.loads, self.reuses, self.load_seconds = {}, {}, {}
        self.peak_resident, self.max_resident_per_kind = [], {}
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def parked_bytes(self) -> int:
        return sum(p.nbytes for p in self.parked.values())

    def release_parked(self) -> None:
        """Free every parked model (a warm worker between jobs when memory is short, and at exit)."""
        while self.parked:
            _, oldest = self.parked.popitem(last=False)
            self._release(oldest.model)


def release(model: object) -> None:
    """Drop a model's storage even if callers still hold a reference to the object: its torch
    modules' (a wrapper's too: ZIM's graphs, Grounding DINO's model) and its last inputs."""
    forget = getattr(model, "forget_inputs", None)
    if callable(forget):
        forget()
    for module in torch_modules(model):
        _release_module(module)


def _release_module(model: torch.nn.Module) -> None:
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
