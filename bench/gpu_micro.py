"""Per-component cost at full size on a GPU (random weights, our code paths).

    python bench/gpu_micro.py --out results.json [--steps 5]

FLUX transformer forwards at 960×1920 (7380 image + 512 text tokens) in bf16, fp8-storage and fp8
(torchao), each also with diffusers' compile_repeated_blocks; the seam-aware VAE decode; T5-XXL and
CLIP-L encoding; MoGe ViT-L on 12 views; ESRGAN x2plus on a wrap-padded 1920×960 panorama; a SAM
ViT-L-sized encoder (ZIM's) in PyTorch.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import full_size  # noqa: E402

GIB = 1 << 30


def timed(fn, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    fn()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def reset() -> None:
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def peak() -> float:
    return round(torch.cuda.max_memory_allocated() / GIB, 2)


def transformer_step(mode: str, compile_blocks: bool, device: torch.device) -> dict:
    from worldgen.models.flux import latents as L
    from worldgen.models.precision import Precision, PrecisionChoice, finalize_block

    reset()
    model = full_size.flux_transformer(device)
    choice = PrecisionChoice(Precision(mode), torch.bfloat16, "bench")
    for block in [*model.transformer_blocks, *model.single_transformer_blocks]:
        finalize_block(block, choice)
    gc.collect()
    torch.cuda.empty_cache()
    weights = torch.cuda.memory_allocated() / GIB
    if compile_blocks:
        model.compile_repeated_blocks(fullgraph=True)
    h, w = L.latent_size(960, 1920)
    tokens = L.pack(L.extend_seam(torch.randn(1, 16, h, w, device=device, dtype=torch.bfloat16), 6))
    inputs = {
        "hidden_states": tokens,
        "encoder_hidden_states": torch.randn(1, 512, 4096, device=device, dtype=torch.bfloat16),
        "pooled_projections": torch.randn(1, 768, device=device, dtype=torch.bfloat16),
        "timestep": torch.tensor([0.5], device=device, dtype=torch.bfloat16),
        "img_ids": L.image_ids(h, w + 6, device, torch.bfloat16),
        "txt_ids": torch.zeros(512, 3, device=device),
        "guidance": torch.tensor([30.0], device=device),
        "return_dict": False,
    }
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    with torch.no_grad():
        model(**inputs)
        torch.cuda.synchronize()
        first = time.perf_counter() - started
        step = timed(lambda: model(**inputs))
    result = {
        "mode": mode,
        "compiled": compile_blocks,
        "weights_gib": round(weights, 2),
        "step_s": round(step, 4),
        "first_call_s": round(first, 2),
        "peak_gib": peak(),
        "tokens": tokens.shape[1] + 512,
    }
    del model
    reset()
    return result


def vae_decode(device: torch.device) -> dict:
    from worldgen.models.flux.vae import decode

    reset()
    model = full_size.vae(device)
    base = torch.cuda.memory_allocated()
    latents = torch.randn(1, 16, 120, 240, device=device, dtype=torch.bfloat16)
    with torch.no_grad():
        seconds = timed(lambda: decode(model, latents, seam=True, tile_rows=0))
        extra = (torch.cuda.max_memory_allocated() - base) / GIB
        tiled = timed(lambda: decode(model, latents, seam=True, tile_rows=64), repeats=1)
    del model
    reset()
    return {"decode_960x1920_s": round(seconds, 3), "decode_extra_gib": round(extra, 2), "row_tiles_s": round(tiled, 3)}


def text_encoders(device: torch.device) -> dict:
    reset()
    t5 = full_size.t5(device)
    ids = torch.randint(0, 32000, (1, 512), device=device)
    with torch.no_grad():
        t5_s = timed(lambda: t5(ids)[0])
    t5_gib = peak()
    del t5
    reset()
    clip = full_size.clip(device)
    ids = torch.randint(0, 49000, (1, 77), device=device)
    with torch.no_grad():
        clip_s = timed(lambda: clip(ids).pooler_output)
    del clip
    reset()
    return {"t5_encode_s": round(t5_s, 4), "t5_peak_gib": t5_gib, "clip_encode_s": round(clip_s, 4)}


def moge_views(device: torch.device) -> dict:
    from worldgen.models.moge.inference import predict_distance
    from worldgen.models.moge.model import MoGeConfig, MoGeModel

    reset()
    model = full_size.on_device(lambda: MoGeModel(MoGeConfig()), device, torch.float32)
    model.image_mean.copy_(torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1))
    model.image_std.copy_(torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1))
    views = torch.rand(12, 3, 512, 512, device=device)
    seconds = timed(lambda: predict_distance(model, views, 90.0), repeats=2)
    result = {"moge_12_views_s": round(seconds, 3), "moge_peak_gib": peak()}
    del model
    reset()
    return result


def esrgan(device: torch.device, tmp: Path) -> dict:
    from spandrel import ModelLoader

    from worldgen.models.tiny.esrgan import esrgan_state
    from worldgen.stages.super_resolution import upscale

    reset()
    path = tmp / "RealESRGAN_x2plus.pth"
    torch.save({"params_ema": esrgan_state(torch.Generator().manual_seed(0), nf=64, blocks=23)}, path)
    descriptor = ModelLoader(device=device).load_from_file(path)
    descriptor.eval().half()
    import numpy as np

    image = np.random.default_rng(0).integers(0, 255, (960, 1920, 3), np.uint8)
    seconds = timed(lambda: upscale(descriptor, image), repeats=1)
    result = {"esrgan_x2_1920x960_s": round(seconds, 3), "esrgan_peak_gib": peak()}
    del descriptor
    reset()
    return result


def sam_vit_l_encoder(device: torch.device) -> dict:
    """ZIM's encoder is SAM ViT-L-sized: timed here in PyTorch (bf16)."""
    from transformers import SamVisionConfig
    from transformers.models.sam.modeling_sam import SamVisionEncoder

    reset()
    config = SamVisionConfig(**full_size.SAM_VIT_L)
    encoder = full_size.on_device(lambda: SamVisionEncoder(config), device, torch.bfloat16)
    image = torch.randn(1, 3, 1024, 1024, device=device, dtype=torch.bfloat16)
    with torch.no_grad():
        seconds = timed(lambda: encoder(image))
    result = {
        "sam_vit_l_encoder_s": round(seconds, 3),
        "sam_vit_l_params_b": round(full_size.params(encoder), 3),
        "sam_peak_gib": peak(),
    }
    del encoder
    reset()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--skip-compile", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda")
    report: dict = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "capability": list(torch.cuda.get_device_capability()),
    }
    steps = []
    for mode in ("bf16", "fp8-storage", "fp8"):
        for compiled in (False,) if args.skip_compile else (False, True):
            try:
                steps.append(transformer_step(mode, compiled, device))
            except Exception as exc:  # a mode that does not run on this stack is reported, not fatal
                steps.append({"mode": mode, "compiled": compiled, "error": f"{type(exc).__name__}: {exc}"[:500]})
                reset()
            print(json.dumps(steps[-1]), flush=True)
    report["transformer"] = steps
    for name, fn in (("vae", vae_decode), ("text", text_encoders), ("moge", moge_views), ("sam", sam_vit_l_encoder)):
        try:
            report[name] = fn(device)
        except Exception as exc:
            report[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        print(name, json.dumps(report[name]), flush=True)
    try:
        report["esrgan"] = esrgan(device, args.out.parent)
    except Exception as exc:
        report["esrgan"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    print("esrgan", json.dumps(report["esrgan"]), flush=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
