"""The reference's GPU numerics in super-resolution and detection: its LayerDecomposition enters
`torch.autocast("cuda", bfloat16)` and never leaves it, so the half-precision Real-ESRGAN and the
float32 Grounding DINO both run their matrix work in bf16 there. Light imports only (no conftest
needed), so these run on a bare GPU machine: `pytest --noconftest tests/test_layer_parity_gpu.py`."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from worldgen.models.grounding_dino import BOX_THRESHOLD, TEXT_THRESHOLD, GroundingDino
from worldgen.models.tiny.esrgan import write_esrgan
from worldgen.models.tiny.grounding_dino import write_grounding_dino
from worldgen.stages.super_resolution import WEIGHTS, load_esrgan, upscale

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="the reference's autocast applies on CUDA")


def test_super_resolution_runs_like_the_reference(tmp_path: Path) -> None:
    """RealESRGANer: /255 in float32, then model and input in half; the convolutions in bf16."""
    write_esrgan(tmp_path / WEIGHTS, torch.Generator().manual_seed(3))
    runtime = SimpleNamespace(device=torch.device("cuda"), path=lambda name: tmp_path)  # no diffusers on a bare GPU box
    descriptor = load_esrgan(runtime)
    image = np.random.default_rng(0).integers(0, 255, (64, 256, 3), np.uint8)
    ours = upscale(descriptor, image)
    pad = 64
    padded = np.concatenate([image[:, -pad:], image, image[:, :pad]], axis=1)
    x = (torch.from_numpy(padded).permute(2, 0, 1)[None].float() / 255).cuda().half()
    with torch.no_grad():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = descriptor.model(x)
        plain = descriptor.model(x)
    assert y.dtype == torch.bfloat16 and plain.dtype == torch.float16
    expected = (y.float().clamp(0, 1)[0].permute(1, 2, 0) * 255).round().byte().cpu().numpy()
    assert np.array_equal(ours, expected[:, 2 * pad : -2 * pad])


def test_grounding_dino_runs_like_the_reference(tmp_path: Path) -> None:
    folder = tmp_path / "grounding-dino"
    write_grounding_dino(folder, torch.Generator().manual_seed(4))
    detector = GroundingDino(folder, torch.device("cuda"))
    image = np.random.default_rng(1).integers(0, 255, (96, 192, 3), np.uint8)
    found = detector.detect(image, ["tree", "sky"])
    inputs = detector.processor(images=Image.fromarray(image), text="tree. sky.", return_tensors="pt").to("cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        outputs = detector.model(**inputs)
        expected = detector.processor.post_process_grounded_object_detection(
            outputs, inputs.input_ids, threshold=BOX_THRESHOLD, text_threshold=TEXT_THRESHOLD, target_sizes=[(96, 192)]
        )[0]
    assert len(found.scores) > 0 and np.array_equal(found.scores, expected["scores"].float().cpu().numpy())
    assert np.array_equal(found.boxes, expected["boxes"].float().cpu().numpy())
