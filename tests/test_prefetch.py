"""Background reads of the next stage's model files: order, memory reserve, failures, stopping,
name resolution on the tiny twins, and the pipeline's use of it (stats in the manifest)."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import pytest

from worldgen.models.prefetch import GIB, Prefetcher, Stream, read_meminfo
from worldgen.models.registry import get_spec
from worldgen.models.runtime import ModelRuntime
from worldgen.models.tiny.flux import T5_SHARDS, TRANSFORMER_SHARDS
from worldgen.pipeline import WorldInputs, generate_world, models_ahead
from worldgen.progress import Progress
from worldgen.request import WorldRequest

MIB = 1 << 20


def plenty() -> dict[str, int]:
    return {"MemTotal": 64 * GIB, "MemAvailable": 60 * GIB}


class Recorder:
    """An opener that records which files were opened and how many bytes each read returned;
    `delay` slows every chunk down (to close the prefetcher in the middle of a file)."""

    def __init__(self, delay: float = 0.0, fail: set[Path] | None = None) -> None:
        self.opened: list[Path] = []
        self.read: dict[Path, int] = {}
        self.delay = delay
        self.fail = fail or set()

    def __call__(self, path: Path) -> Stream:
        if path in self.fail:
            raise PermissionError(f"no access to {path}")
        recorder, stream = self, path.open("rb", buffering=0)
        self.opened.append(path)

        class Counting(io.RawIOBase):
            def readinto(self, buffer) -> int:
                if recorder.delay:
                    time.sleep(recorder.delay)
                count = stream.readinto(buffer) or 0
                recorder.read[path] = recorder.read.get(path, 0) + count
                return count

            def close(self) -> None:
                stream.close()
                super().close()

        return Counting()


def _files(tmp_path: Path, sizes: list[int]) -> list[Path]:
    paths = []
    for index, size in enumerate(sizes):
        path = tmp_path / f"file{index}.bin"
        path.write_bytes(bytes([index % 256]) * size)
        paths.append(path)
    return paths


def test_reads_every_queued_file_fully_and_in_order(tmp_path: Path) -> None:
    sizes = [5000, 0, 4096, 1, 12345]
    paths = _files(tmp_path, sizes)
    recorder = Recorder()
    with Prefetcher(chunk_bytes=4096, meminfo=plenty, opener=recorder) as prefetcher:
        prefetcher.prefetch(paths[:3])
        prefetcher.prefetch([paths[0], *paths[3:]])  # a path queued before is not read again
        assert prefetcher.wait_idle(10)
        stats = prefetcher.stats
    assert recorder.opened == paths
    assert [recorder.read.get(path, 0) for path in paths] == sizes
    assert (stats.queued, stats.files, stats.bytes, stats.skipped, stats.failed) == (5, 5, sum(sizes), 0, 0)
    assert stats.seconds >= 0
    assert set(stats.as_dict()) == {"queued", "files", "bytes", "skipped", "failed", "seconds"}


def test_skips_files_when_memory_is_short(tmp_path: Path) -> None:
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(b"x" * MIB)
    with large.open("wb") as stream:
        stream.truncate(64 * MIB)
    # Reserve = max(25 % of 64 GiB, 4 GiB) = 16 GiB; 32 MiB above it leaves room for 1 MiB, not 64.
    tight = {"MemTotal": 64 * GIB, "MemAvailable": 16 * GIB + 32 * MIB}
    recorder = Recorder()
    with Prefetcher(meminfo=lambda: tight, opener=recorder) as prefetcher:
        prefetcher.prefetch([large, small])
        assert prefetcher.wait_idle(10)
        stats = prefetcher.stats
    assert recorder.opened == [small]
    assert (stats.files, stats.skipped, stats.bytes) == (1, 1, MIB)

    # The 4 GiB floor applies on a small host (25 % of 8 GiB is only 2 GiB).
    small_host = {"MemTotal": 8 * GIB, "MemAvailable": 4 * GIB}
    with Prefetcher(meminfo=lambda: small_host, opener=Recorder()) as prefetcher:
        prefetcher.prefetch([small])
        assert prefetcher.wait_idle(10)
        assert (prefetcher.stats.files, prefetcher.stats.skipped) == (0, 1)

    def unknown() -> dict[str, int]:
        raise FileNotFoundError("/proc/meminfo")

    with Prefetcher(meminfo=unknown, opener=Recorder()) as prefetcher:  # no meminfo: do not risk it
        prefetcher.prefetch([small])
        assert prefetcher.wait_idle(10)
        assert (prefetcher.stats.files, prefetcher.stats.skipped, prefetcher.stats.failed) == (0, 1, 0)


def test_read_meminfo_gives_bytes() -> None:
    if not Path("/proc/meminfo").is_file():
        pytest.skip("no /proc/meminfo")
    info = read_meminfo()
    assert 0 < info["MemAvailable"] <= info["MemTotal"] and info["MemTotal"] > 64 * MIB


def test_survives_missing_and_unreadable_files(tmp_path: Path) -> None:
    good, denied = _files(tmp_path, [100, 200])
    recorder = Recorder(fail={denied})
    with Prefetcher(meminfo=plenty, opener=recorder) as prefetcher:
        prefetcher.prefetch([tmp_path / "missing.safetensors", denied, tmp_path, good])
        assert prefetcher.wait_idle(10)
        stats = prefetcher.stats
    assert recorder.opened == [good]
    assert (stats.files, stats.failed, stats.bytes) == (1, 3, 100)


def test_close_stops_within_a_file_promptly(tmp_path: Path) -> None:
    big = tmp_path / "big.safetensors"
    with big.open("wb") as stream:
        stream.truncate(2 * GIB)  # sparse: nothing is written to disk
    later = _files(tmp_path, [10])[0]
    recorder = Recorder(delay=0.002)  # ≥ 0.25 s per 128 MiB: far longer than the test
    prefetcher = Prefetcher(chunk_bytes=MIB, meminfo=plenty, opener=recorder)
    prefetcher.prefetch([big, later])
    deadline = time.monotonic() + 30
    while prefetcher.stats.bytes == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert prefetcher.stats.bytes > 0
    started = time.monotonic()
    prefetcher.close()
    assert time.monotonic() - started < 1.0
    assert prefetcher._thread is not None and not prefetcher._thread.is_alive()
    stats = prefetcher.stats
    assert 0 < stats.bytes < 2 * GIB and stats.files == 0
    assert recorder.opened == [big]  # the rest of the queue was dropped
    prefetcher.prefetch([later])  # a closed prefetcher ignores new work
    assert prefetcher.stats == stats and recorder.opened == [big]


def _flux_files(root: Path, name: str) -> list[str]:
    prefix = get_spec(name).relative_dir
    return [
        *(f"{prefix}/transformer/diffusion_pytorch_model-{i:05d}-of-{TRANSFORMER_SHARDS:05d}.safetensors"
          for i in range(1, TRANSFORMER_SHARDS + 1)),
        f"{prefix}/text_encoder/model.safetensors",
        *(f"{prefix}/text_encoder_2/model-{i:05d}-of-{T5_SHARDS:05d}.safetensors" for i in range(1, T5_SHARDS + 1)),
        f"{prefix}/vae/diffusion_pytorch_model.safetensors",
    ]  # fmt: skip


def test_runtime_prefetch_resolves_names_in_order(tiny_models: Path) -> None:
    runtime = ModelRuntime.create(tiny_models, device="cpu", precision="fp32")
    recorder = Recorder()
    runtime.prefetcher = Prefetcher(meminfo=plenty, opener=recorder)
    files = runtime.prefetch("flux-dev", "no-such-model", "lora-inpaint-sky", "zim", "moge")
    expected = [
        *_flux_files(tiny_models, "flux-dev"),
        "tencent/HunyuanWorld-1/HunyuanWorld-PanoInpaint-Sky/lora.safetensors",
        "naver-iv/zim-anything-vitl/zim_vit_l_2092/encoder.onnx",
        "naver-iv/zim-anything-vitl/zim_vit_l_2092/decoder.onnx",
        "Ruicheng/moge-vitl/model.pt",
    ]
    assert [str(f.relative_to(tiny_models)) for f in files] == expected
    assert runtime.prefetcher.wait_idle(10)
    assert recorder.opened == files
    stats = runtime.prefetch_stats()
    assert stats["files"] == len(expected) and stats["bytes"] == sum(f.stat().st_size for f in files)
    runtime.close()
    assert runtime.prefetcher.closed
    # A closed prefetcher is replaced by the next prefetch (a runtime used for a second job).
    assert runtime.prefetch("esrgan") and not runtime.prefetcher.closed
    runtime.close()


def test_runtime_prefetch_skips_missing_models_and_never_downloads(
    tiny_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_download(*args: object, **kwargs: object) -> Path:
        raise AssertionError("prefetch must not download")

    monkeypatch.setattr("worldgen.models.resolver.download", no_download)
    moge = get_spec("moge").relative_dir
    shutil.copytree(tiny_models / moge, tmp_path / moge)
    # An incomplete FLUX folder (no VAE) counts as missing.
    dev = get_spec("flux-dev").relative_dir
    shutil.copytree(tiny_models / dev, tmp_path / dev, ignore=shutil.ignore_patterns("vae"))
    runtime = ModelRuntime.create(tmp_path, device="cpu", precision="fp32", allow_download=True)
    assert runtime.prefetch("flux-dev", "zim", "esrgan", "no-such-model") == []
    assert runtime.prefetcher is None
    assert runtime.prefetch_stats() == {"queued": 0, "files": 0, "bytes": 0, "skipped": 0, "failed": 0, "seconds": 0}
    runtime.prefetcher = Prefetcher(meminfo=plenty)
    assert runtime.prefetch("flux-dev", "moge") == [tmp_path / moge / "model.pt"]
    runtime.close()


def test_models_ahead_follow_the_plan() -> None:
    text = ["flux-dev", "lora-pano-text"]
    fill = ["esrgan", "lora-inpaint-scene", "lora-inpaint-sky", "flux-fill"]
    box = [{"label": "tree", "box": [0, 0, 10, 10]}]
    cases = [
        (WorldRequest(prompt="a bay"), [*text, *fill, "grounding-dino", "zim"]),  # outdoor: the sky pass
        (WorldRequest(prompt="a room", scene="indoor"), [*text, "esrgan"]),  # no pass: SR only
        (WorldRequest(prompt="a room", scene="indoor", labels_fg1=["sofa"]), [*text, *fill, "grounding-dino", "zim"]),
        (WorldRequest(panorama_upload_id="p", scene="indoor", objects_fg1=box), [*fill, "zim"]),  # boxes: no DINO
        (WorldRequest(prompt="a bay", layered=False), [*text, "moge"]),
        (WorldRequest(prompt="a bay", image_upload_id="i", layered=False), ["flux-fill", "lora-pano-image", "moge"]),
        (WorldRequest(panorama_upload_id="p", distance_upload_id="d", layered=False), []),
    ]
    for request, expected in cases:
        assert models_ahead(request) == expected, request
    assert models_ahead(WorldRequest(prompt="a bay"), until="panorama") == text


def test_pipeline_records_prefetch_in_manifest(tiny_models: Path, tmp_path: Path) -> None:
    runtime = ModelRuntime.create(tiny_models, device="cpu", precision="fp32")
    recorder = Recorder()
    runtime.prefetcher = Prefetcher(meminfo=plenty, opener=recorder)
    request = WorldRequest(prompt="a quiet bay", seed=5, steps=2, height=64, formats=["glb"], layered=False)
    manifest = generate_world(request, runtime, tmp_path / "out", Progress(), WorldInputs(tmp_path))
    expected = [*_flux_files(tiny_models, "flux-dev"), get_spec("lora-pano-text").relative_dir + "/lora.safetensors",
                "Ruicheng/moge-vitl/model.pt"]  # fmt: skip
    prefetch = manifest["prefetch"]
    assert prefetch["queued"] == len(expected) and prefetch["bytes"] > 0
    assert prefetch["skipped"] == prefetch["failed"] == 0
    opened = [str(p.relative_to(tiny_models)) for p in recorder.opened]
    assert opened and opened == expected[: len(opened)]  # in the plan's order, the transformer first
    assert runtime.prefetcher is not None and runtime.prefetcher.closed  # the job stopped it
    assert (tmp_path / "out/world.glb").is_file()
