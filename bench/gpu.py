"""The whole layered world at full model size on a GPU: random weights, worldgen's own loaders.

    python bench/gpu.py all --dir /tmp/wg-full --out-dir OUT --runs auto+taylorseer auto@panorama --card-gib 22.5
    python bench/gpu.py prepare --dir /tmp/wg-full          # the model set only
    python bench/gpu.py world --dir /tmp/wg-full --precision fp8 --out OUT/fp8.json

`prepare` writes every model at its published size and configuration with random values, in the
files `worldgen models prepare` produces (FLUX transformers with fp8-storage tensors in e4m3 and
the text LoRA counted as fused; everything else as published): FLUX.1-dev and FLUX.1-Fill-dev
(transformer 11.9 B, T5-XXL, CLIP-L, VAE), the scene and sky LoRAs (rank 64 / 16), MoGe ViT-L,
Grounding DINO tiny, a ZIM ONNX pair whose encoder is a SAM ViT-L-sized network, ESRGAN x2plus.
Compute and memory do not depend on the values; MoGe is wired to predict a noisy plane (as its
tiny twin is) so that fusion and meshing work on plausible geometry.

`world` runs one full layered world in a fresh process — panorama 960×1920 at 50 steps, fg1 and
fg2 from explicit boxes (so the layered path always runs), sky detected, three Fill inpaintings
with true CFG, SR, depth with 12 views per layer, meshes, PLY/GLB/Draco — through
`generate_world`, exactly as a job does. It first evicts the model files from the page cache,
so loads come from disk, and records per stage: wall time, peak allocator and driver GPU memory,
peak host RSS; plus model load times and the cold start (process start → first denoising step).
`--card-gib 22.5` emulates a smaller card, the A10G's 23,028 MiB: the whole card, not just torch's
allocator — right after the CUDA context exists, a ballast `cuMemAlloc` takes the rest of the real
card, so every library (cuBLAS workspaces, onnxruntime, the context itself) shares the 22.5 GiB and
the runtime's planning sees the free memory such a card would have. Driver-level figures are
reported without the ballast.
`world --worlds K` runs K worlds in that one process on one warm runtime (models parked between
worlds within `warm_budget`, as the warm worker and a batched container do) and reports each
world's seconds, loads and driver peak, the steady state (worlds 2..K) and worlds per hour.
`--smoke` swaps the FLUX parts for the tiny twins' sizes so the script can be checked on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import full_size  # noqa: E402

GIB = 1 << 30
PROMPT = "a quiet alpine lake at dawn, pine forest, snowy peaks, a wooden cabin on the shore"
# Explicit boxes in the 960×1920 panorama: a tree in fg1, a cabin across the seam in fg2.
BOXES_FG1 = [{"label": "tree", "box": [300, 330, 620, 760]}]
BOXES_FG2 = [{"label": "cabin", "box": [1700, 420, 2080, 700]}]


# ----------------------------------------------------------------------------------- prepare


def _flux_configs(tiny: Path | None) -> dict[str, dict]:
    """Full-size configurations, or (smoke) those of the tiny twins in `tiny`."""
    if tiny is None:
        return {
            "flux-dev": full_size.FLUX_TRANSFORMER,
            "flux-fill": full_size.FILL_TRANSFORMER,
            "t5": full_size.T5_XXL,
            "clip": full_size.CLIP_L,
            "vae": full_size.VAE,
        }
    dev, fill = tiny / "black-forest-labs/FLUX.1-dev", tiny / "black-forest-labs/FLUX.1-Fill-dev"

    def read(path: Path) -> dict:
        config = json.loads(path.read_text())
        return {k: v for k, v in config.items() if not k.startswith("_")}

    return {
        "flux-dev": read(dev / "transformer/config.json"),
        "flux-fill": read(fill / "transformer/config.json"),
        "t5": read(dev / "text_encoder_2/config.json"),
        "clip": read(dev / "text_encoder/config.json"),
        "vae": read(dev / "vae/config.json"),
    }


def _write_transformer(folder: Path, config: dict, device: torch.device, fused: list[str]) -> float:
    """A random transformer in the prepared format: fp8-storage tensors in e4m3, sharded."""
    from diffusers import FluxTransformer2DModel

    from worldgen.models.prepared import MARKER, STORAGE_DTYPE, fp8_parameters, write_shards

    model = full_size.on_device(lambda: FluxTransformer2DModel(**config), device, torch.bfloat16)
    (folder / "transformer").mkdir(parents=True, exist_ok=True)
    model.save_config(folder / "transformer")
    cast = fp8_parameters(folder)
    state = model.state_dict()
    write_shards(
        ((k, (v.to(STORAGE_DTYPE) if k in cast else v).cpu()) for k, v in sorted(state.items())),
        folder / "transformer",
    )
    marker = {"fused_loras": fused, "fp8_storage": "float8_e4m3fn", "source": "random weights (bench/gpu.py)"}
    (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    params = full_size.params(model)
    del model, state
    return params


def _write_text_and_vae(folder: Path, configs: dict, device: torch.device) -> None:
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    t5 = full_size.on_device(lambda: T5EncoderModel(T5Config(**configs["t5"])), device, torch.bfloat16)
    t5.save_pretrained(folder / "text_encoder_2", max_shard_size="5GB")
    del t5
    clip = full_size.on_device(lambda: CLIPTextModel(CLIPTextConfig(**configs["clip"])), device, torch.bfloat16)
    clip.save_pretrained(folder / "text_encoder")
    del clip
    vae = full_size.on_device(lambda: AutoencoderKL(**configs["vae"]), device, torch.float32)
    vae.save_pretrained(folder / "vae")
    del vae


def _link_tree(source: Path, target: Path) -> None:
    """FLUX.1-Fill-dev's text encoders are FLUX.1-dev's: hard links (same bytes, half the disk)."""
    for path in source.rglob("*"):
        if path.is_file():
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, destination)


def export_zim_encoder(path: Path) -> None:
    """The ViT-L-sized ZIM encoder to ONNX (minutes of tracing on the CPU: `prepare` runs it in a
    second process, beside the GPU work)."""
    from worldgen.models.tiny.zim import ENCODER_OUTPUTS, SamTrunkEncoder

    path.parent.mkdir(parents=True, exist_ok=True)
    encoder = full_size.randomize_(SamTrunkEncoder(**full_size.SAM_VIT_L)).eval()
    torch.onnx.export(
        encoder,
        (torch.zeros(1, 3, 1024, 1024),),
        str(path),
        input_names=["image"],
        output_names=list(ENCODER_OUTPUTS),
        opset_version=17,
        dynamo=False,
    )


def prepare(root: Path, device: torch.device, smoke: bool) -> dict[str, Any]:
    from diffusers import FluxTransformer2DModel
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

    from worldgen.models.moge.checkpoint import to_reference
    from worldgen.models.moge.model import MoGeConfig, MoGeModel
    from worldgen.models.registry import get_spec
    from worldgen.models.tiny import make_tiny
    from worldgen.models.tiny.esrgan import esrgan_state
    from worldgen.models.tiny.lora import write_lora
    from worldgen.models.tiny.moge import wire_points_to_uv

    started = time.perf_counter()
    shutil.rmtree(root, ignore_errors=True)
    zim = root / get_spec("zim").relative_dir / "zim_vit_l_2092"
    zim_export = subprocess.Popen([sys.executable, __file__, "zim-encoder", "--dir", str(zim / "encoder.onnx")])
    tiny = root.parent / f"{root.name}-tiny"
    shutil.rmtree(tiny, ignore_errors=True)
    make_tiny(tiny)  # tokenizers, scheduler and pipeline files, the ZIM decoder
    configs = _flux_configs(tiny if smoke else None)
    report: dict[str, Any] = {"smoke": smoke}
    timings = {}

    def folder(name: str) -> Path:
        return root / get_spec(name).relative_dir

    for name, fused in (("flux-dev", ["lora-pano-text"]), ("flux-fill", [])):
        target, source = folder(name), tiny / get_spec(name).relative_dir
        target.mkdir(parents=True)
        for item in ("model_index.json", "scheduler", "tokenizer", "tokenizer_2"):
            copy = shutil.copytree if (source / item).is_dir() else shutil.copy2
            copy(source / item, target / item)
        t = time.perf_counter()
        report[f"{name}_transformer_params_b"] = round(_write_transformer(target, configs[name], device, fused), 3)
        timings[f"{name}:transformer"] = time.perf_counter() - t
        torch.cuda.empty_cache() if device.type == "cuda" else None
    t = time.perf_counter()
    _write_text_and_vae(folder("flux-dev"), configs, device)
    for item in ("text_encoder", "text_encoder_2", "vae"):
        _link_tree(folder("flux-dev") / item, folder("flux-fill") / item)
    timings["text+vae"] = time.perf_counter() - t

    t = time.perf_counter()
    with torch.device("meta"):
        fill = FluxTransformer2DModel(**configs["flux-fill"])
    ranks = {"lora-inpaint-scene": 64, "lora-inpaint-sky": 16}  # the published files' ranks (0.48 / 0.12 GB)
    for offset, (name, rank) in enumerate(ranks.items()):
        write_lora(folder(name) / "lora.safetensors", fill, rank=rank, generator=torch.Generator().manual_seed(offset))
    timings["loras"] = time.perf_counter() - t

    t = time.perf_counter()
    moge = wire_points_to_uv(full_size.randomize_(MoGeModel(MoGeConfig())))
    moge.image_mean.copy_(torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
    moge.image_std.copy_(torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    state = {k: v.detach().contiguous() for k, v in to_reference(moge.state_dict()).items()}
    folder("moge").mkdir(parents=True)
    torch.save({"model_config": moge.config.to_dict(), "model": state}, folder("moge") / "model.pt")
    report["moge_params_b"] = round(full_size.params(moge), 3)
    del moge, state
    timings["moge"] = time.perf_counter() - t

    t = time.perf_counter()
    dino_folder, tiny_dino = folder("grounding-dino"), tiny / get_spec("grounding-dino").relative_dir
    shutil.copytree(tiny_dino, dino_folder)
    dino = full_size.randomize_(GroundingDinoForObjectDetection(GroundingDinoConfig()))
    dino.save_pretrained(dino_folder)  # replaces config.json and model.safetensors; tokenizer files stay
    report["grounding_dino_params_b"] = round(full_size.params(dino), 3)
    del dino
    timings["grounding-dino"] = time.perf_counter() - t

    t = time.perf_counter()
    if zim_export.wait() != 0:
        raise RuntimeError("the ZIM encoder export failed (see its output above)")
    timings["zim (after the rest)"] = time.perf_counter() - t
    shutil.copy2(tiny / get_spec("zim").relative_dir / "zim_vit_l_2092" / "decoder.onnx", zim / "decoder.onnx")
    esrgan = folder("esrgan") / "RealESRGAN_x2plus.pth"
    esrgan.parent.mkdir(parents=True)
    torch.save({"params_ema": esrgan_state(torch.Generator().manual_seed(0), nf=64, blocks=23)}, esrgan)
    shutil.rmtree(tiny)

    files = [p for p in root.rglob("*") if p.is_file()]
    report["files_gib"] = round(sum(p.stat().st_size for p in files) / GIB, 2)
    report["write_s"] = {k: round(v, 1) for k, v in timings.items()}
    report["prepare_s"] = round(time.perf_counter() - started, 1)
    return report


# ------------------------------------------------------------------------------------- world


def process_started() -> float:
    """Wall-clock time this process was started (Linux /proc), for the cold start."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[19])  # starttime, in clock ticks since boot
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")


def evict_page_cache(root: Path) -> int:
    """Drop `root`'s files from the page cache, so loads read the disk (no root rights needed)."""
    evicted = 0
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                evicted += path.stat().st_size
            finally:
                os.close(fd)
    return evicted


def take_ballast(device: torch.device, card_bytes: int) -> int:
    """Hold (real total − `card_bytes`) of device memory outside torch's allocator for the life of
    the process, so that only `card_bytes` minus what is already in use (the CUDA context) stays
    free. Returns the ballast's size."""
    import ctypes

    torch.cuda.init()
    torch.zeros(1, device=device)  # the primary context, current on this thread
    _, total = torch.cuda.mem_get_info(device)
    ballast = total - card_bytes
    if ballast <= 0:
        return 0
    pointer = ctypes.c_uint64()
    status = ctypes.CDLL("libcuda.so.1").cuMemAlloc_v2(ctypes.byref(pointer), ctypes.c_size_t(ballast))
    if status != 0:
        raise RuntimeError(f"cuMemAlloc of the {ballast / GIB:.1f} GiB ballast failed with CUresult {status}")
    return ballast


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def hwm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class Monitor:
    """Per stage: wall time, peak allocator memory, peak driver-level GPU memory, peak host RSS.

    The stage comes from the pipeline's progress sink; a sampling thread (every 20 ms) reads
    the driver's used memory and the RSS; the allocator's exact peak is read and reset at each
    stage change."""

    def __init__(self, device: torch.device, ballast_bytes: int = 0) -> None:
        self.device = device
        self.ballast_bytes = ballast_bytes
        self.stage = "start"
        self.stats: dict[str, dict[str, float]] = {}
        self.first_step: float | None = None
        self.started = time.time()
        self._entered = time.perf_counter()
        self.step = "start"
        self.steps: dict[str, float] = {}
        """Seconds per progress message (numbers folded: "step N/N"), a split of each stage."""
        self._step_entered = self._entered
        self._stop = threading.Event()
        self._nvml = None
        if device.type == "cuda":
            try:
                import pynvml

                pynvml.nvmlInit()
                index = device.index if device.index is not None else torch.cuda.current_device()
                self._nvml = (pynvml, pynvml.nvmlDeviceGetHandleByIndex(index))
            except Exception:  # without NVML, the CUDA driver's view of free memory
                self._nvml = None
        self.baseline_gib = round(self._driver_used() / GIB, 2)  # the CUDA context, before any model
        self.window_driver_gib = 0.0
        """Driver-level peak since the last `take_window` (one world of several)."""
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _driver_used(self) -> int:
        if self.device.type != "cuda":
            return 0
        if self._nvml:
            pynvml, handle = self._nvml
            return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used) - self.ballast_bytes
        free, total = torch.cuda.mem_get_info(self.device)
        return total - free - self.ballast_bytes

    def _entry(self, stage: str) -> dict[str, float]:
        return self.stats.setdefault(stage, {"s": 0.0, "alloc_gib": 0.0, "driver_gib": 0.0, "rss_gib": 0.0})

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            entry = self._entry(self.stage)
            used = self._driver_used() / GIB
            entry["driver_gib"] = max(entry["driver_gib"], used)
            self.window_driver_gib = max(self.window_driver_gib, used)
            entry["rss_gib"] = max(entry["rss_gib"], rss_bytes() / GIB)

    def _close_stage(self) -> None:
        entry = self._entry(self.stage)
        entry["s"] += time.perf_counter() - self._entered
        if self.device.type == "cuda":
            entry["alloc_gib"] = max(entry["alloc_gib"], torch.cuda.max_memory_allocated(self.device) / GIB)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._entered = time.perf_counter()

    def _close_step(self) -> None:
        now = time.perf_counter()
        self.steps[self.step] = self.steps.get(self.step, 0.0) + now - self._step_entered
        self._step_entered = now

    def sink(self, stage: str, fraction: float, message: str | None) -> None:
        if self.first_step is None and stage == "panorama" and message and message.startswith("step 1/"):
            self.first_step = time.time()
        folded = re.sub(r"\b[0-9]+\b", "N", message or "")
        step = f"{stage}: {folded}"
        if step != self.step:
            self._close_step()
            self.step = step
        if stage != self.stage:
            self._close_stage()
            self.stage = stage

    def take_window(self) -> float:
        peak, self.window_driver_gib = self.window_driver_gib, 0.0
        return round(peak, 2)

    def step_seconds(self) -> dict[str, float]:
        """Where each stage's time went, by the last progress message before it (largest first)."""
        return {k: round(v, 2) for k, v in sorted(self.steps.items(), key=lambda kv: -kv[1])}

    def finish(self) -> dict[str, dict[str, float]]:
        self._close_step()
        self._close_stage()
        self._stop.set()
        self._thread.join()
        return {k: {m: round(v, 2) for m, v in e.items()} for k, e in self.stats.items()}


def world(args: argparse.Namespace) -> dict[str, Any]:
    from worldgen.models.runtime import ModelRuntime, warm_budget
    from worldgen.pipeline import WorldInputs, generate_world
    from worldgen.progress import Progress
    from worldgen.request import WorldRequest

    started = process_started()
    device = torch.device(args.device)
    report: dict[str, Any] = {"mode": args.precision, "step_cache": args.step_cache}
    setup = time.perf_counter()
    report["page_cache_evicted_gib"] = round(evict_page_cache(args.dir) / GIB, 1)
    # The eviction (with its fsync of freshly prepared files) emulates a fresh machine: no job pays
    # it, so the cold start leaves it out (the CUDA context and the ballast stay in).
    report["bench_setup_s"] = round(time.perf_counter() - setup, 2)
    ballast = 0
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
        if args.card_gib:
            ballast = take_ballast(device, int(args.card_gib * GIB))
        free, _ = torch.cuda.mem_get_info(device)
        report["card_gib"] = args.card_gib
        report["free_at_start_gib"] = round(free / GIB, 2)
    import onnxruntime

    from worldgen.models.zim import zim_backend

    report["onnxruntime_providers"] = onnxruntime.get_available_providers()
    report["zim_backend"] = zim_backend(device)
    monitor = Monitor(device, ballast)
    # Several worlds: one warm runtime, as the warm worker and a batched container run them.
    keep = warm_budget(device) if args.worlds > 1 else 0
    report["warm_budget_gib"] = round(keep / GIB, 1)
    runtime = ModelRuntime.create(args.dir, device=device, precision=args.precision, keep_bytes=keep)
    report["precision"] = {"mode": runtime.precision.mode.value, "reason": runtime.precision.reason}
    common = {"seed": args.seed, "steps": args.steps, "scene": "outdoor", "precision": args.precision,
              "step_cache": args.step_cache}  # fmt: skip
    # One text → layered world job. On random weights only explicit boxes (in panorama pixels)
    # make fg1 and fg2 certain; the API takes boxes only with a panorama to draw on, so they are
    # added to the validated text request here. `--until panorama` stops after the panorama.
    boxes = WorldRequest(
        panorama_upload_id="drawn-on", objects_fg1=_scaled(BOXES_FG1, args.height),
        objects_fg2=_scaled(BOXES_FG2, args.height),
    )  # fmt: skip
    world_request = WorldRequest(prompt=PROMPT, height=args.height, formats=["ply", "glb", "drc"], **common)
    drawn = {"objects_fg1": boxes.objects_fg1, "objects_fg2": boxes.objects_fg2}
    world_request = world_request.model_copy(update=drawn)
    out = args.work / f"{args.precision}-{args.step_cache}"
    report["until"] = args.until
    shutil.rmtree(out, ignore_errors=True)
    error, manifests, per_world = None, [], []
    for index in range(args.worlds):
        began = time.perf_counter()
        target = out if index == 0 else out.with_name(f"{out.name}-w{index}")
        try:
            progress = Progress(sink=monitor.sink)
            done = generate_world(world_request, runtime, target, progress, WorldInputs(), until=args.until)
        except Exception as exc:  # a mode that cannot fit or run is a result, not a crash
            error = f"{type(exc).__name__}: {exc}"[:1000]
            break
        manifests.append(done)
        per_world.append({
            "s": round(time.perf_counter() - began, 2), "loads": sum(done["model_loads"].values()),
            "load_s": round(sum(done["model_load_s"].values()), 2), "reuses": sum(done["model_reuses"].values()),
            "parked_gib": done["parked_models"]["gib"], "driver_peak_gib": monitor.take_window(),
            "timings_s": done["timings_s"],
        })  # fmt: skip
        if index > 0:
            shutil.rmtree(target, ignore_errors=True)  # disk: one world's files are kept
    report["world_s"] = per_world[0]["s"] if per_world else round(time.perf_counter() - began, 2)
    if args.worlds > 1:
        report["worlds"] = per_world
        steady = [w["s"] for w in per_world[1:]]
        if steady:
            report["steady_world_s"] = round(sum(steady) / len(steady), 2)
            report["worlds_per_hour"] = round(3600 / report["steady_world_s"], 1)
    report["stages"] = monitor.finish()
    report["steps_s"] = monitor.step_seconds()
    report["driver_baseline_gib"] = monitor.baseline_gib
    report["error"] = error
    cold = monitor.first_step - started - report["bench_setup_s"] if monitor.first_step else None
    report["cold_start_s"] = round(cold, 2) if cold is not None else None
    report["peak_rss_gib"] = round(hwm_bytes() / GIB, 2)
    report["peak_alloc_gib"] = max((s["alloc_gib"] for s in report["stages"].values()), default=0.0)
    report["peak_driver_gib"] = max((s["driver_gib"] for s in report["stages"].values()), default=0.0)
    # Generation (prompt encoding, 50 steps, decode) with the models loaded; the job's own figure
    # includes the loads.
    report["panorama_s"] = report["stages"].get("panorama", {}).get("s")
    manifest = manifests[0] if manifests else {}
    report["panorama_job_s"] = manifest.get("timings_s", {}).get("panorama")
    for key in ("timings_s", "model_load_s", "model_loads", "peak_resident_models", "prefetch", "warnings"):
        report[key] = manifest.get(key)
    if manifest and args.until != "panorama":
        report["layers"] = manifest["layers"]
        names = {layer["name"] for layer in report["layers"]}
        if not error and not {"fg1", "fg2", "sky", "background"} <= names:  # the layered path must run in full
            report["error"] = f"layered path incomplete: layers {sorted(names)}; {report['warnings']}"
        report["files_mb"] = {f["name"]: round(f["size"] / 1e6, 1) for f in manifest["files"]}
    return report


def _scaled(objects: list[dict], height: int) -> list[dict]:
    factor = height / 960
    return [{"label": o["label"], "box": [round(v * factor) for v in o["box"]]} for o in objects]


def compare_panoramas(work: Path, reference: str, other: str) -> dict[str, float]:
    """The step cache's effect: the cached panorama against the uncached one (same weights, seed)."""
    from PIL import Image

    a = np.asarray(Image.open(work / reference / "panorama.png"), np.float64)
    b = np.asarray(Image.open(work / other / "panorama.png"), np.float64)
    mse = float(((a - b) ** 2).mean())
    return {
        "mean_abs_diff": round(float(np.abs(a - b).mean()), 3),
        "psnr_db": round(10 * np.log10(255**2 / mse), 2) if mse else float("inf"),
    }


# --------------------------------------------------------------------------------------- cli


def row(result: dict[str, Any]) -> str:
    picked = (result.get("precision") or {}).get("mode")
    name = result["mode"] + (f" → {picked}" if result["mode"] == "auto" and picked else "")
    name += "" if result.get("step_cache", "off") == "off" else f" + {result['step_cache']}"
    name += " (panorama only)" if result.get("until") == "panorama" else ""
    cells = [
        name,
        result.get("panorama_s") or "–",
        result["world_s"] if not result.get("error") else f"failed: {result['error'][:80]}",
        f"{result['peak_alloc_gib']} / {result['peak_driver_gib']}",  # allocator / driver
        result["peak_rss_gib"],
        result["cold_start_s"],
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main() -> None:
    from worldgen.limits import PRECISION_MODES, STEP_CACHES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["prepare", "world", "all", "zim-encoder"])
    parser.add_argument("--dir", type=Path, required=True, help="model set (written by prepare)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/wg-bench-work"), help="world outputs")
    parser.add_argument("--out", type=Path, help="world: the JSON result")
    parser.add_argument("--out-dir", type=Path, help="all: results directory")
    runs = ["auto+taylorseer", "auto@panorama", "fp8-storage+taylorseer@panorama", "bf16@panorama"]
    parser.add_argument("--runs", nargs="+", type=parse_run, default=[parse_run(r) for r in runs],
                        help=f"all: MODE[+CACHE][@panorama] each, in order (default: {' '.join(runs)})")  # fmt: skip
    parser.add_argument(
        "--until", choices=["panorama", "world"], default="world", help="world: stop after the panorama"
    )
    parser.add_argument("--precision", default="auto", choices=PRECISION_MODES)
    parser.add_argument("--step-cache", default="off", choices=STEP_CACHES)
    parser.add_argument(
        "--card-gib", type=float, default=None, help="emulate a card this size, context and all libraries included"
    )
    parser.add_argument("--worlds", type=int, default=1, help="world: K worlds in one process (a warm runtime)")
    parser.add_argument("--height", type=int, default=960)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny FLUX sizes (to check the script on a CPU)")
    args = parser.parse_args()

    if args.command == "zim-encoder":  # prepare's helper process; --dir is the file
        export_zim_encoder(args.dir)
    elif args.command == "prepare":
        print(json.dumps(prepare(args.dir, torch.device(args.device), args.smoke), indent=2))
    elif args.command == "world":
        result = world(args)
        text = json.dumps(result, indent=2)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)
        print(text)
    else:
        out_dir = args.out_dir or Path(".")
        out_dir.mkdir(parents=True, exist_ok=True)
        if not (args.dir / "black-forest-labs/FLUX.1-dev/prepared.json").is_file():
            # In its own process: the runs' GPU numbers are device-wide, so this one holds no memory.
            command = [sys.executable, __file__, "prepare", "--dir", str(args.dir), "--device", args.device]
            done = subprocess.run(command + (["--smoke"] if args.smoke else []), check=True, stdout=subprocess.PIPE)
            (out_dir / "prepare.json").write_bytes(done.stdout)
            print("prepare", done.stdout.decode(), flush=True)
        results: list[dict[str, Any]] = []
        effects: dict[str, dict[str, float]] = {}
        table: list[str] = []
        for mode, cache, until in args.runs:
            target = out_dir / f"world-{mode}-{cache}-{until}.json"
            command = [sys.executable, __file__, "world", "--dir", str(args.dir), "--work", str(args.work),
                       "--precision", mode, "--step-cache", cache, "--until", until, "--out", str(target),
                       "--height", str(args.height), "--steps", str(args.steps), "--seed", str(args.seed),
                       "--device", args.device]  # fmt: skip
            if args.card_gib and mode != "bf16":  # bf16 weights alone exceed a 24 GB card
                command += ["--card-gib", str(args.card_gib)]
            subprocess.run(command, check=False, stdout=subprocess.DEVNULL)
            result = json.loads(target.read_text()) if target.is_file() else None
            if result is None:
                continue
            results.append(result)
            print(row(result), json.dumps(result["stages"]), flush=True)
            effects = step_cache_effects(args.work, results)
            (out_dir / "step-cache-effect.json").write_text(json.dumps(effects, indent=2))
            table = ["| mode | panorama_s | world_s | peak_vram_gib | peak_rss_gib | cold_start_s |"]
            table += ["|---|---|---|---|---|---|"] + [row(r) for r in results]
            (out_dir / "table.md").write_text("\n".join(table) + "\n")  # after every run: a timeout keeps the rest
        print("step cache effect on the panorama", json.dumps(effects), flush=True)
        print("\n".join(table))


def parse_run(spec: str) -> tuple[str, str, str]:
    """`MODE[+CACHE][@panorama]`, e.g. `fp8+taylorseer`, `fp8@panorama` (the panorama stage only)."""
    from worldgen.limits import PRECISION_MODES, STEP_CACHES

    text, _, until = spec.partition("@")
    mode, _, cache = text.partition("+")
    cache, until = cache or "off", until or "world"
    if mode not in PRECISION_MODES or cache not in STEP_CACHES or until not in ("world", "panorama"):
        raise argparse.ArgumentTypeError(
            f"bad run {spec!r}: MODE[+CACHE][@panorama] with MODE in {', '.join(PRECISION_MODES)} "
            f"and CACHE in {', '.join(STEP_CACHES)}"
        )
    return mode, cache, until


def step_cache_effects(work: Path, results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Every cached panorama against the uncached one of the same mode, where both ran."""
    ran = {(r["mode"], r["step_cache"]) for r in results if not r.get("error")}
    return {
        f"{mode}+{cache}": compare_panoramas(work, f"{mode}-off", f"{mode}-{cache}")
        for mode, cache in sorted(ran)
        if cache != "off" and (mode, "off") in ran
    }


if __name__ == "__main__":
    main()
