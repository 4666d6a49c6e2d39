"""ZIM's GPU memory at full size: how much free memory it needs (decides zim.GPU_BYTES_NEEDED).

    python bench/zim_memory.py --dir /tmp/wg-full [--boxes 16] [--out zim.json]

Runs the ViT-L-sized ZIM (written by `bench/gpu.py prepare`) on the padded SR panorama a world
mattes (1920×5760 for a 960×1920 panorama), on the GPU with the backend `zim_backend` picks
when memory is plenty, and reports the allocator's peak and the driver's used memory above what
was in use before the model loaded, and the seconds for set_image and the box mattes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

GIB = 1 << 30


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--boxes", type=int, default=16)
    parser.add_argument("--height", type=int, default=1920)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from worldgen.models.runtime import ModelRuntime
    from worldgen.models.zim import ZimPredictor, zim_backend

    device = torch.device("cuda")
    torch.zeros(1, device=device)
    runtime = ModelRuntime.create(args.dir, device=device, precision="auto")
    folder = runtime.path("zim") / "zim_vit_l_2092"
    height, width = args.height, args.height * 3  # SR panorama wrap-padded by half its width
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    x0 = rng.uniform(0, width - 400, args.boxes)
    y0 = rng.uniform(0, height - 400, args.boxes)
    boxes = np.stack([x0, y0, x0 + 400, y0 + 400], 1)

    torch.cuda.synchronize()
    base_free, total = torch.cuda.mem_get_info(device)
    torch.cuda.reset_peak_memory_stats(device)
    base_alloc = torch.cuda.memory_allocated(device)
    report: dict[str, object] = {"backend": zim_backend(device), "gpu": torch.cuda.get_device_name(device)}
    started = time.perf_counter()
    predictor = ZimPredictor(folder, device)
    report["load_s"] = round(time.perf_counter() - started, 2)
    for attempt in ("first", "second"):  # the second without conversion or cold kernels
        torch.cuda.synchronize()
        started = time.perf_counter()
        predictor.set_image(image)
        torch.cuda.synchronize()
        report[f"set_image_{attempt}_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        masks = predictor.box_masks(boxes)
        torch.cuda.synchronize()
        report[f"box_masks_{attempt}_s"] = round(time.perf_counter() - started, 3)
    free, _ = torch.cuda.mem_get_info(device)
    report["masks_shape"] = list(masks.shape)
    report["peak_alloc_above_gib"] = round((torch.cuda.max_memory_allocated(device) - base_alloc) / GIB, 2)
    report["reserved_above_gib"] = round((torch.cuda.memory_reserved(device)) / GIB, 2)
    report["driver_used_above_gib"] = round((base_free - free) / GIB, 2)
    report["card_total_gib"] = round(total / GIB, 2)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
