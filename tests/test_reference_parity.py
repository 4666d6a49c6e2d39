"""Facts of the reference (HunyuanWorld-1.0 @ d17a023) that our panorama and VAE code must keep,
pinned on the tiny models: when each pipeline blends the seam, in which order image → panorama
draws from its generator, that a request's seed alone decides the bytes, and the `reference`
VAE mode's tiled encode/decode (docs/reference-parity.md)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import FluxTransformer2DModel

from worldgen.models.flux import latents as L
from worldgen.models.flux.vae import decode, encode_sample, image_tensor, load_vae, mask_tensor
from worldgen.models.runtime import ModelRuntime
from worldgen.progress import Progress
from worldgen.stages.image_to_panorama import image_to_panorama
from worldgen.stages.inpaint import inpainter, scene_pass
from worldgen.stages.panorama import PanoramaSpec
from worldgen.stages.text_to_panorama import text_to_panorama

STEPS = 8


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sampler's sequence of transformer forwards ("F") and seam blends ("B")."""
    seen: list[str] = []
    forward, blend = FluxTransformer2DModel.forward, L.blend_seam

    def spy_forward(self, *args, **kwargs):
        seen.append("F")
        return forward(self, *args, **kwargs)

    def spy_blend(grid: torch.Tensor, extend: int) -> torch.Tensor:
        seen.append("B")
        return blend(grid, extend)

    monkeypatch.setattr(FluxTransformer2DModel, "forward", spy_forward)
    monkeypatch.setattr(L, "blend_seam", spy_blend)
    return seen


def blend_schedule(last_early_step: int, forwards_per_step: int = 1) -> str:
    """The reference loop: blend after the step while i <= early_steps, and once after the loop."""
    per_step = "F" * forwards_per_step
    return "".join(per_step + ("B" if i <= last_early_step else "") for i in range(STEPS)) + "B"


def photo() -> np.ndarray:
    return (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)


def test_text_to_panorama_blends_after_steps_0_to_3(cpu_runtime: ModelRuntime, events: list[str]) -> None:
    text_to_panorama(cpu_runtime, PanoramaSpec("a lake", seed=42, height=64, width=128, steps=STEPS))
    assert "".join(events) == blend_schedule(3)


def test_image_to_panorama_blends_after_steps_0_to_3(cpu_runtime: ModelRuntime, events: list[str]) -> None:
    image_to_panorama(cpu_runtime, PanoramaSpec("a room", seed=42, height=64, width=128, steps=STEPS), photo())
    assert "".join(events) == blend_schedule(3, forwards_per_step=2)  # true CFG 2.0: two forwards a step


def test_inpainting_blends_after_steps_0_to_4(cpu_runtime: ModelRuntime, events: list[str]) -> None:
    image = (np.random.default_rng(1).random((64, 128, 3)) * 255).astype(np.uint8)
    mask = np.zeros((64, 128), bool)
    mask[20:40, 30:70] = True
    spec = scene_pass("fg1", "outdoor", ["tree"])
    with inpainter(cpu_runtime, [spec], Progress(), steps=STEPS) as painter:
        events.clear()  # prompt encoding ran no transformer, but be explicit about what is counted
        painter.run(spec, image, mask, Progress())
    assert "".join(events) == blend_schedule(4, forwards_per_step=2)


def test_image_to_panorama_draws_like_the_reference(cpu_runtime: ModelRuntime, forward_calls: list) -> None:
    """One CPU generator: the placed canvas's posterior sample, the noise, the masked canvas's sample."""
    inputs = forward_calls
    image_to_panorama(cpu_runtime, PanoramaSpec("a room", seed=7, height=64, width=128, steps=2), photo())
    generator = torch.Generator("cpu").manual_seed(7)
    shape = (1, 16, 8, 16)
    torch.randn(shape, generator=generator)  # draw 1: the canvas's posterior sample
    noise = torch.randn(shape, generator=generator)  # draw 2
    assert torch.equal(inputs[0][..., :64], L.pack(L.extend_seam(noise, L.SEAM_EXTEND)))
    # draw 3 is the masked canvas's posterior sample: the conditioning must be exactly that
    vae = load_vae(cpu_runtime.path("flux-fill"), torch.device("cpu"), torch.float32)
    from worldgen.stages.image_to_panorama import place_input

    canvas, mask = place_input(photo(), 64, 128)
    masked = image_tensor(canvas) * (1 - mask_tensor(mask.astype(bool)))
    expected = encode_sample(vae, masked, generator)
    assert torch.equal(inputs[0][..., 64:128], L.pack(L.extend_seam(expected, L.SEAM_EXTEND)))


_SEEDED_RUN = """
import hashlib, sys, torch
torch.set_num_threads(1)
from worldgen.models.runtime import ModelRuntime
from worldgen.stages.panorama import PanoramaSpec
from worldgen.stages.text_to_panorama import text_to_panorama
runtime = ModelRuntime.create(sys.argv[1], device="cpu", precision="fp32")
spec = PanoramaSpec("a misty lake", seed=int(sys.argv[2]), height=64, width=128, steps=4)
print(hashlib.sha256(text_to_panorama(runtime, spec).image.tobytes()).hexdigest())
"""


def test_the_seed_alone_decides_the_bytes_across_processes(tiny_models: Path) -> None:
    def run(seed: int, hash_seed: str) -> str:
        env = {"PYTHONHASHSEED": hash_seed, "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
        out = subprocess.run(
            [sys.executable, "-c", _SEEDED_RUN, str(tiny_models), str(seed)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            timeout=300,
        )
        return out.stdout.strip().splitlines()[-1]

    first, second, other = run(42, "1"), run(42, "2"), run(43, "1")
    assert first == second
    assert first != other
    here = text_to_panorama(
        ModelRuntime.create(tiny_models, device="cpu", precision="fp32"),
        PanoramaSpec("a misty lake", seed=42, height=64, width=128, steps=4),
    ).image
    assert hashlib.sha256(here.tobytes()).hexdigest() == first


# --- the VAE modes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vae(tiny_models: Path):
    return load_vae(tiny_models / "black-forest-labs/FLUX.1-Fill-dev", torch.device("cpu"), torch.float32)


def test_reference_encode_is_diffusers_tiled_encode_beyond_1024(vae) -> None:
    wide = torch.rand((1, 3, 64, 1040), generator=torch.Generator().manual_seed(0)) * 2 - 1
    narrow = wide[..., :1024]

    def sample(images: torch.Tensor, mode: str) -> torch.Tensor:
        return encode_sample(vae, images, torch.Generator().manual_seed(5), mode=mode)

    vae.enable_tiling()  # what the reference's pipelines do
    try:
        tiled = (vae.encode(wide).latent_dist.sample(torch.Generator().manual_seed(5)) - vae.config.shift_factor) * (
            vae.config.scaling_factor
        )
    finally:
        vae.disable_tiling()
    assert torch.equal(sample(wide, "reference"), tiled)
    assert not vae.use_tiling  # the mode leaves the shared VAE as it found it
    assert (sample(wide, "full-frame") - tiled).abs().max() > 1e-3  # tiles show beyond 1024 px
    assert torch.equal(sample(narrow, "reference"), sample(narrow, "full-frame"))


def _cross_fade_rows(a: torch.Tensor, b: torch.Tensor, extent: int) -> torch.Tensor:
    """Independent arithmetic: row y of b = a[-extent + y]·(1 − y/extent) + b[y]·(y/extent)."""
    b = b.clone()
    for y in range(extent):
        b[:, :, y] = a[:, :, a.shape[2] - extent + y] * (1 - y / extent) + b[:, :, y] * (y / extent)
    return b


def test_reference_decode_uses_row_tiles_of_128_latent_rows(vae) -> None:
    """A 960-pixel-high frame: rows 0..767 from the whole-frame decode, the last 192 rows faded into
    the decode of latent rows 96..119 (the reference's second tile)."""
    z = torch.randn((1, 16, 120, 24), generator=torch.Generator().manual_seed(2))
    ours = decode(vae, z, seam=False, mode="reference")
    raw = z / vae.config.scaling_factor + vae.config.shift_factor
    full = vae.decode(raw).sample
    second = vae.decode(raw[..., 96:, :]).sample
    expected = torch.cat([full[..., :768, :], _cross_fade_rows(full, second, 192)], dim=2).clamp(-1, 1)
    assert ours.shape == (1, 3, 960, 192)
    assert torch.equal(ours, expected)
    assert (ours - decode(vae, z, seam=False)).abs()[..., 768:, :].max() > 1e-3  # full frame differs there
    assert torch.equal(ours[..., :768, :], decode(vae, z, seam=False)[..., :768, :])


def test_reference_decode_blends_the_seam_per_row(vae) -> None:
    z = torch.randn((1, 16, 16, 24), generator=torch.Generator().manual_seed(3))
    raw = torch.cat([z, z[..., :2]], -1) / vae.config.scaling_factor + vae.config.shift_factor
    wide = vae.decode(raw).sample
    expected = wide[..., :192].clone()
    for x in range(16):
        expected[..., x] = wide[..., 192 + x] * (1 - x / 16) + wide[..., x] * (x / 16)
    assert torch.equal(decode(vae, z, seam=True, mode="reference"), expected.clamp(-1, 1))


def test_unknown_vae_mode_is_refused(vae) -> None:
    with pytest.raises(ValueError, match="full-frame, reference"):
        decode(vae, torch.zeros(1, 16, 8, 16), seam=True, mode="tiled")


def test_masks_are_binarised_at_half_like_the_reference() -> None:
    grey = np.repeat(np.array([[0, 127, 128, 255]], np.uint8), 16, axis=0).repeat(8, axis=1)  # 16 × 32
    assert mask_tensor(grey)[0, 0, 0, ::8].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert mask_tensor(grey > 0)[0, 0, 0, ::8].tolist() == [0.0, 1.0, 1.0, 1.0]
    with pytest.raises(TypeError, match="bool or uint8"):
        mask_tensor(grey.astype(np.float32))


def test_vae_input_matches_the_reference_preprocessing() -> None:
    """Values (x/255)·2 − 1 computed in float32, in channels-last memory as diffusers leaves them."""
    image = (np.random.default_rng(4).random((16, 32, 3)) * 255).astype(np.uint8)
    tensor = image_tensor(image)
    expected = torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None] * 2 - 1
    assert torch.equal(tensor, expected)
    assert tensor.is_contiguous(memory_format=torch.channels_last)


def test_manifest_behaviour_names_the_reference_and_the_differences() -> None:
    from worldgen.reference import behaviour
    from worldgen.request import WorldRequest

    default = behaviour(WorldRequest(prompt="a lake"), "bf16")
    assert default["reference"] == "Tencent-Hunyuan/HunyuanWorld-1.0@d17a023"
    assert default["vae_mode"] == "full-frame"
    assert any("full-frame VAE" in d for d in default["deliberate_differences"])
    exact = behaviour(WorldRequest(prompt="a lake", vae_mode="reference"), "bf16")
    assert not any("VAE" in d for d in exact["deliberate_differences"])
    cached = behaviour(WorldRequest(prompt="a lake", step_cache="taylorseer"), "fp8")
    assert any("taylorseer" in d for d in cached["deliberate_differences"])
    assert any("'fp8'" in d for d in cached["deliberate_differences"])
    json.dumps(cached)  # goes into manifest.json as it is
