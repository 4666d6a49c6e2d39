"""Text → panorama and image → panorama on the tiny models, on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from worldgen.errors import Cancelled, InvalidRequest, UnsupportedHardware
from worldgen.models.flux import latents as L
from worldgen.models.runtime import ModelRuntime
from worldgen.progress import Progress
from worldgen.stages.image_to_panorama import image_to_panorama, place_input
from worldgen.stages.panorama import PanoramaSpec
from worldgen.stages.text_to_panorama import text_to_panorama

SMALL = {"height": 128, "width": 256, "steps": 4}


def seam_statistic(image: np.ndarray) -> tuple[float, float, float]:
    """Mean |column W-1 − column 0| against the range of adjacent-column differences near the seam."""
    x = image.astype(np.float64)
    steps = np.abs(np.diff(x, axis=1)).mean(axis=(0, 2))
    neighbours = np.concatenate([steps[1:33], steps[-33:-1]])
    seam = float(np.abs(x[:, -1] - x[:, 0]).mean())
    return seam, float(neighbours.min()), float(neighbours.max())


def test_same_seed_same_bytes_other_seed_differs(cpu_runtime: ModelRuntime) -> None:
    first = text_to_panorama(cpu_runtime, PanoramaSpec("a foggy valley", seed=5, **SMALL)).image
    again = text_to_panorama(cpu_runtime, PanoramaSpec("a foggy valley", seed=5, **SMALL)).image
    other = text_to_panorama(cpu_runtime, PanoramaSpec("a foggy valley", seed=6, **SMALL)).image
    assert first.shape == (128, 256, 3) and first.dtype == np.uint8
    assert first.tobytes() == again.tobytes()
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 5


def test_initial_latents_are_the_documented_draw(cpu_runtime: ModelRuntime, forward_calls: list) -> None:
    text_to_panorama(cpu_runtime, PanoramaSpec("a desert", seed=77, **SMALL))
    draw = torch.randn((1, 16, 2 * (128 // 16), 2 * (256 // 16)), generator=torch.Generator("cpu").manual_seed(77))
    extended = torch.cat([draw, draw[..., :6]], dim=-1)  # seam extension: 6 copied columns
    assert forward_calls[0].shape == (1, (16 // 2) * ((32 + 6) // 2), 64)
    assert torch.equal(forward_calls[0], L.pack(extended))
    assert len(forward_calls) == SMALL["steps"]


def test_matches_diffusers_and_fused_lora_equals_unfused(cpu_runtime: ModelRuntime, tiny_models: Path) -> None:
    """Seam off, our loop with the LoRA fused while streaming == diffusers' FluxPipeline with the
    LoRA as an unfused peft adapter; and the LoRA changes the image."""
    from diffusers import FluxPipeline

    ours = text_to_panorama(cpu_runtime, PanoramaSpec("a red canyon", seed=11, seam=False, **SMALL)).image
    pipe = FluxPipeline.from_pretrained(tiny_models / "black-forest-labs/FLUX.1-dev", dtype=torch.float32)
    pipe.load_lora_weights(
        str(tiny_models / "tencent/HunyuanWorld-1/HunyuanWorld-PanoDiT-Text"), weight_name="lora.safetensors"
    )
    kwargs = {"height": 128, "width": 256, "num_inference_steps": 4, "guidance_scale": 30.0, "output_type": "np"}
    unfused = pipe("a red canyon", generator=torch.Generator("cpu").manual_seed(11), **kwargs).images[0]
    pipe.unload_lora_weights()
    base = pipe("a red canyon", generator=torch.Generator("cpu").manual_seed(11), **kwargs).images[0]
    as_uint8 = lambda a: (a * 255).round().astype(int)  # noqa: E731
    assert np.abs(ours.astype(int) - as_uint8(unfused)).max() <= 1
    assert np.abs(ours.astype(int) - as_uint8(base)).mean() > 1.0


@pytest.mark.parametrize("seed", [1, 2])
def test_seam_blending_closes_the_wrap(cpu_runtime: ModelRuntime, seed: int) -> None:
    spec = {"height": 128, "width": 256, "steps": 6}
    blended = text_to_panorama(cpu_runtime, PanoramaSpec("a valley", seed=seed, **spec)).image
    plain = text_to_panorama(cpu_runtime, PanoramaSpec("a valley", seed=seed, seam=False, **spec)).image
    seam, low, high = seam_statistic(blended)
    assert low <= seam <= high, (seam, low, high)
    seam_off, low_off, high_off = seam_statistic(plain)
    assert seam_off > high_off, (seam_off, low_off, high_off)  # without blending the wrap is an outlier


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"height": 100, "width": 200}, "height"),
        ({"height": 128, "width": 128}, "width"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"steps": 0}, "steps"),
        ({"seed": 2**32}, "seed"),
    ],
)
def test_bad_requests_are_clear_errors(cpu_runtime: ModelRuntime, changes: dict, field: str) -> None:
    base = {"prompt": "a lake", "seed": 1, **SMALL}
    with pytest.raises(InvalidRequest) as info:
        text_to_panorama(cpu_runtime, PanoramaSpec(**{**base, **changes}))
    assert info.value.details["field"] == field


def test_truncation_and_ignored_negative_are_warnings(cpu_runtime: ModelRuntime) -> None:
    progress = Progress()
    long_prompt = "a calm sea " * 130  # 1430 characters: past CLIP's 77 and T5's 512 tokens
    text_to_panorama(cpu_runtime, PanoramaSpec(long_prompt, seed=1, negative_prompt="fog", **SMALL), progress)
    assert any("CLIP keeps 77 tokens" in w for w in progress.warnings)
    assert any("T5 keeps 512 tokens" in w for w in progress.warnings)
    assert any("negative_prompt has no effect" in w for w in progress.warnings)


def test_true_cfg_runs_a_negative_pass(cpu_runtime: ModelRuntime, forward_calls: list) -> None:
    off = text_to_panorama(cpu_runtime, PanoramaSpec("a lake", seed=3, **SMALL)).image
    assert len(forward_calls) == 4
    on = text_to_panorama(
        cpu_runtime, PanoramaSpec("a lake", seed=3, negative_prompt="fog", true_cfg_scale=3.0, **SMALL)
    ).image
    assert len(forward_calls) == 4 + 8
    assert np.abs(on.astype(int) - off.astype(int)).mean() > 1


def test_cancel_stops_within_one_step(cpu_runtime: ModelRuntime, forward_calls: list) -> None:
    progress = Progress()

    def sink(stage: str, fraction: float, message: str | None) -> None:
        if stage == "panorama" and message == "step 2/10":
            progress.cancel.cancel()

    progress.sink = sink
    with pytest.raises(Cancelled):
        text_to_panorama(cpu_runtime, PanoramaSpec("a lake", seed=3, height=128, width=256, steps=10), progress)
    assert len(forward_calls) == 2
    assert cpu_runtime.resident == {}  # the transformer was released on the way out


def test_one_model_resident_at_a_time(cpu_runtime: ModelRuntime) -> None:
    text_to_panorama(cpu_runtime, PanoramaSpec("a lake", seed=3, **SMALL))
    assert len(cpu_runtime.peak_resident) == 1
    loaded = {"flux-dev:transformer+lora-pano-text", "flux-dev:vae", "flux-dev:text_encoder", "flux-dev:text_encoder_2"}
    assert loaded <= set(cpu_runtime.load_seconds)  # the transformer's key names the LoRA fused into it


@pytest.mark.parametrize("precision", ["bf16", "fp8-storage"])
def test_memory_modes_run_on_cpu(tiny_models: Path, precision: str) -> None:
    runtime = ModelRuntime.create(tiny_models, device="cpu", precision=precision)
    image = text_to_panorama(runtime, PanoramaSpec("a lake", seed=3, **SMALL)).image
    reference = text_to_panorama(
        ModelRuntime.create(tiny_models, device="cpu", precision="fp32"), PanoramaSpec("a lake", seed=3, **SMALL)
    ).image
    assert image.shape == reference.shape
    assert np.abs(image.astype(int) - reference.astype(int)).mean() < 25  # same picture, lower precision


def test_fp8_compute_needs_a_capable_gpu(tiny_models: Path) -> None:
    with pytest.raises(UnsupportedHardware, match=r"capability ≥ 8\.9"):
        ModelRuntime.create(tiny_models, device="cpu", precision="fp8")


def test_image_to_panorama(cpu_runtime: ModelRuntime, forward_calls: list) -> None:
    rng = np.random.default_rng(0)
    photo = (rng.random((60, 80, 3)) * 255).astype(np.uint8)
    canvas, mask = place_input(photo, 128, 256)
    inside = np.argwhere(mask == 0)
    # the photo (long side = 80° of 360°) sits in the middle, eroded by 5 pixels
    assert abs(inside[:, 1].mean() - 128) < 2 and abs(inside[:, 0].mean() - 64) < 2
    assert 40 < np.ptp(inside[:, 1]) < 57
    assert canvas[mask == 1].max() == 0
    result = image_to_panorama(cpu_runtime, PanoramaSpec("a room", seed=2, **SMALL), photo)
    again = image_to_panorama(cpu_runtime, PanoramaSpec("a room", seed=2, **SMALL), photo)
    assert result.image.shape == (128, 256, 3) and result.image.tobytes() == again.image.tobytes()
    assert forward_calls[0].shape[-1] == 384  # 64 noisy + 64 masked-image + 256 mask channels
    assert len(forward_calls) == 2 * 2 * SMALL["steps"]  # true CFG 2.0 by default, two runs
    assert result.settings["true_cfg_scale"] == 2.0


def test_step_cache_skips_block_work(cpu_runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    """TaylorSeer caching (off by default) computes attention on fewer steps and stays close."""
    from diffusers.models.transformers.transformer_flux import FluxAttnProcessor

    attention_calls = []
    original = FluxAttnProcessor.__call__

    def spy(self, *args, **kwargs):
        attention_calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FluxAttnProcessor, "__call__", spy)
    spec = {"prompt": "a lake", "seed": 3, "height": 128, "width": 256, "steps": 12}
    plain = text_to_panorama(cpu_runtime, PanoramaSpec(**spec)).image
    full = len(attention_calls)
    cached = text_to_panorama(cpu_runtime, PanoramaSpec(**spec, step_cache="taylorseer")).image
    assert len(attention_calls) - full < 0.8 * full
    assert np.abs(cached.astype(int) - plain.astype(int)).mean() < 40
    with pytest.raises(InvalidRequest, match="step_cache"):
        text_to_panorama(cpu_runtime, PanoramaSpec(**spec, step_cache="deepcache"))
