"""`worldgen models prepare`: an fp8, LoRA-fused set that gives the same panorama as the raw set."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from safetensors import safe_open

from worldgen.models.runtime import ModelRuntime
from worldgen.stages.panorama import PanoramaSpec
from worldgen.stages.text_to_panorama import text_to_panorama


def test_prepared_set_is_identical_in_fp8_storage(tiny_models: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    result = subprocess.run([sys.executable, "-m", "worldgen", "models", "prepare", "--out", str(out), "--dir",
                             str(tiny_models)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    dev = out / "black-forest-labs/FLUX.1-dev"
    assert json.loads((dev / "prepared.json").read_text())["fused_loras"] == ["lora-pano-text"]
    assert not (out / "tencent/HunyuanWorld-1/HunyuanWorld-PanoDiT-Text").exists()  # fused, not shipped
    assert (out / "tencent/HunyuanWorld-1/HunyuanWorld-PanoInpaint-Scene/lora.safetensors").is_file()
    dtypes: Counter[str] = Counter()
    for shard in (dev / "transformer").glob("*.safetensors"):
        with safe_open(str(shard), "pt") as handle:
            dtypes.update(str(handle.get_tensor(key).dtype) for key in handle.keys())  # noqa: SIM118
    assert dtypes["torch.float8_e4m3fn"] > 0 and dtypes["torch.bfloat16"] > 0
    raw_bytes = sum(p.stat().st_size for p in (tiny_models / "black-forest-labs/FLUX.1-dev/transformer").iterdir())
    prepared_bytes = sum(p.stat().st_size for p in (dev / "transformer").iterdir())
    assert prepared_bytes < 0.8 * raw_bytes  # tiny: many small bf16 norms; full size ≈ 0.63
    spec = PanoramaSpec(prompt="a lake", seed=3, height=128, width=256, steps=3)
    raw = text_to_panorama(ModelRuntime.create(tiny_models, device="cpu", precision="fp8-storage"), spec)
    prepared = text_to_panorama(ModelRuntime.create(out, device="cpu", precision="fp8-storage"), spec)
    assert np.array_equal(raw.image, prepared.image) and prepared.settings["lora_prefused"]
