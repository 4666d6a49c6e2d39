"""`make-tiny` writes the real on-disk layout, deterministically, and every file loads."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from worldgen.defaults import TINY_MARKER
from worldgen.models.registry import MODELS
from worldgen.models.resolver import missing_files
from worldgen.models.tiny import make_tiny

FLUX_FILES = [
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "text_encoder_2/config.json",
    "text_encoder_2/model-00001-of-00002.safetensors",
    "text_encoder_2/model-00002-of-00002.safetensors",
    "text_encoder_2/model.safetensors.index.json",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "tokenizer_2/special_tokens_map.json",
    "tokenizer_2/spiece.model",
    "tokenizer_2/tokenizer.json",
    "tokenizer_2/tokenizer_config.json",
    "transformer/config.json",
    "transformer/diffusion_pytorch_model-00001-of-00003.safetensors",
    "transformer/diffusion_pytorch_model-00002-of-00003.safetensors",
    "transformer/diffusion_pytorch_model-00003-of-00003.safetensors",
    "transformer/diffusion_pytorch_model.safetensors.index.json",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
]
EXPECTED_FILES = sorted(
    [f"black-forest-labs/FLUX.1-dev/{f}" for f in FLUX_FILES]
    + [f"black-forest-labs/FLUX.1-Fill-dev/{f}" for f in FLUX_FILES]
    + [
        f"tencent/HunyuanWorld-1/HunyuanWorld-{name}/lora.safetensors"
        for name in ("PanoDiT-Text", "PanoDiT-Image", "PanoInpaint-Scene", "PanoInpaint-Sky")
    ]
    + ["Ruicheng/moge-vitl/model.pt", "xinntao/Real-ESRGAN/RealESRGAN_x2plus.pth"]
    + [TINY_MARKER]  # says these are the noise-making twins (the service's defaults and /v1/info read it)
    + [f"naver-iv/zim-anything-vitl/zim_vit_l_2092/{f}.onnx" for f in ("encoder", "decoder")]
    + [
        f"IDEA-Research/grounding-dino-tiny/{f}"
        for f in (
            "config.json",
            "model.safetensors",
            "preprocessor_config.json",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.txt",
        )
    ]
)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout_file_by_file(tiny_models: Path) -> None:
    files = sorted(str(p.relative_to(tiny_models)) for p in tiny_models.rglob("*") if p.is_file())
    assert files == EXPECTED_FILES
    total = sum((tiny_models / f).stat().st_size for f in files)
    assert total < 20e6
    for name in (
        "flux-dev",
        "flux-fill",
        "lora-pano-text",
        "lora-pano-image",
        "lora-inpaint-scene",
        "lora-inpaint-sky",
    ):
        spec = MODELS[name]
        assert missing_files(tiny_models / spec.relative_dir, spec) == [], name


def test_deterministic_for_a_seed(tmp_path: Path, tiny_models: Path) -> None:
    make_tiny(tmp_path / "again", seed=0)
    make_tiny(tmp_path / "other", seed=1)
    same, other = _digests(tmp_path / "again"), _digests(tmp_path / "other")
    assert same == _digests(tiny_models)
    weights = [f for f in EXPECTED_FILES if f.endswith((".safetensors", ".pt", ".pth", ".onnx"))]
    assert all(same[f] != other[f] for f in weights)


def test_configs_keep_the_real_conventions(tiny_models: Path) -> None:
    dev = tiny_models / "black-forest-labs/FLUX.1-dev"
    fill = tiny_models / "black-forest-labs/FLUX.1-Fill-dev"
    vae = json.loads((dev / "vae/config.json").read_text())
    assert vae["latent_channels"] == 16
    assert len(vae["block_out_channels"]) == 4  # three downsamplings: 8×
    assert (vae["scaling_factor"], vae["shift_factor"]) == (0.3611, 0.1159)
    assert not vae["use_quant_conv"] and not vae["use_post_quant_conv"]
    t_dev = json.loads((dev / "transformer/config.json").read_text())
    t_fill = json.loads((fill / "transformer/config.json").read_text())
    assert t_dev["in_channels"] == 64 and t_dev["guidance_embeds"] and t_dev["patch_size"] == 1
    assert (t_fill["in_channels"], t_fill["out_channels"]) == (384, 64)
    assert sum(t_dev["axes_dims_rope"]) == t_dev["attention_head_dim"]
    scheduler = json.loads((dev / "scheduler/scheduler_config.json").read_text())
    real = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
            "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True}  # fmt: skip
    assert {k: scheduler[k] for k in real} == real
    index = json.loads((fill / "model_index.json").read_text())
    assert index["_class_name"] == "FluxFillPipeline" and index["tokenizer_2"] == ["transformers", "T5TokenizerFast"]


def test_diffusers_reads_the_folders(tiny_models: Path) -> None:
    """The folders are real diffusers pipelines: diffusers' own loader accepts them."""
    from diffusers import FluxFillPipeline, FluxPipeline

    dev = FluxPipeline.from_pretrained(tiny_models / "black-forest-labs/FLUX.1-dev")
    fill = FluxFillPipeline.from_pretrained(tiny_models / "black-forest-labs/FLUX.1-Fill-dev")
    assert dev.tokenizer.model_max_length == 77 and dev.tokenizer_2.model_max_length == 512
    assert dev.vae_scale_factor == 8 and fill.transformer.config.in_channels == 384
    dev.load_lora_weights(
        str(tiny_models / "tencent/HunyuanWorld-1/HunyuanWorld-PanoDiT-Text"), weight_name="lora.safetensors"
    )
    assert dev.transformer.peft_config  # diffusers' FLUX LoRA loader accepted our key format


SHARDED = [("transformer", "diffusion_pytorch_model.safetensors", 3), ("text_encoder_2", "model.safetensors", 2)]


def _sharded_tensors(folder: Path, weights_name: str) -> dict[str, torch.Tensor]:
    """Every tensor of a sharded checkpoint, read shard by shard (a tensor in two shards fails)."""
    from safetensors import safe_open

    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob(weights_name.replace(".safetensors", "-*-of-*.safetensors"))):
        with safe_open(str(shard), framework="pt") as handle:
            keys = handle.keys()
            assert not set(keys) & set(tensors), f"{shard.name} repeats tensors of an earlier shard"
            tensors |= {key: handle.get_tensor(key) for key in keys}
    return tensors


@pytest.mark.parametrize("model", ["flux-dev", "flux-fill"])
@pytest.mark.parametrize(("part", "weights_name", "shards"), SHARDED)
def test_sharded_like_the_hub(tiny_models: Path, model: str, part: str, weights_name: str, shards: int) -> None:
    """The hub stores FLUX transformers and T5 sharded: files named `{stem}-0000i-of-0000n`, an index whose
    weight map names each tensor's shard exactly once and whose total_size counts the tensor bytes."""
    from safetensors import safe_open

    folder = tiny_models / MODELS[model].relative_dir / part
    index = json.loads((folder / f"{weights_name}.index.json").read_text())
    stem = weights_name.removesuffix(".safetensors")
    names = {f"{stem}-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)}
    assert not (folder / weights_name).exists()
    assert set(index["weight_map"].values()) == names
    for name in names:
        with safe_open(str(folder / name), framework="pt") as handle:
            assert set(handle.keys()) == {k for k, v in index["weight_map"].items() if v == name}
    tensors = _sharded_tensors(folder, weights_name)
    assert tensors.keys() == index["weight_map"].keys()
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())


@pytest.mark.parametrize("model", ["flux-dev", "flux-fill"])
def test_sharded_folders_load_identically(tiny_models: Path, model: str) -> None:
    """Our streaming loader, diffusers' pipeline loader and the T5 loader all read the shards to the same weights."""
    from diffusers import FluxFillPipeline, FluxPipeline
    from transformers import T5EncoderModel

    from worldgen.models.flux.transformer import load_transformer
    from worldgen.models.precision import Precision, PrecisionChoice

    repo = tiny_models / MODELS[model].relative_dir
    pipeline = FluxFillPipeline if model == "flux-fill" else FluxPipeline
    pipe = pipeline.from_pretrained(repo, torch_dtype=torch.float32)
    fp32 = PrecisionChoice(Precision.FP32, torch.float32, "test")
    ours = load_transformer(repo, device=torch.device("cpu"), precision=fp32).state_dict()
    raw = _sharded_tensors(repo / "transformer", "diffusion_pytorch_model.safetensors")
    theirs = pipe.transformer.state_dict()
    assert ours.keys() == theirs.keys() == raw.keys()
    assert all(torch.equal(ours[k], theirs[k]) and torch.equal(ours[k], raw[k].float()) for k in raw)

    t5 = T5EncoderModel.from_pretrained(repo / "text_encoder_2", dtype=torch.bfloat16).state_dict()  # as text.py
    raw = _sharded_tensors(repo / "text_encoder_2", "model.safetensors")
    assert raw and raw.keys() <= t5.keys() <= raw.keys() | {"encoder.embed_tokens.weight", "shared.weight"}
    assert all(torch.equal(t5[k], raw[k]) for k in raw)
    assert torch.equal(t5["encoder.embed_tokens.weight"], t5["shared.weight"])
    piped = pipe.text_encoder_2.state_dict()
    assert all(torch.equal(piped[k], raw[k].float()) for k in raw)


def test_tokenizer_files_agree(tiny_models: Path) -> None:
    """The slow (spiece.model) and fast (tokenizer.json) T5 files encode alike; CLIP's EOS is its top id."""
    import sentencepiece as spm
    from transformers import CLIPTokenizer, T5TokenizerFast

    folder = tiny_models / "black-forest-labs/FLUX.1-dev"
    fast = T5TokenizerFast.from_pretrained(folder / "tokenizer_2")
    slow = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer_2/spiece.model"))
    text = "A quiet Harbor at dusk, 8k"
    assert fast(text).input_ids[:-1] == slow.encode(text)
    clip = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    assert clip.eos_token_id == max(clip.get_vocab().values())


def test_make_tiny_cli(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worldgen.cli.main", "models", "make-tiny", str(tmp_path / "m"), "--seed", "3"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wrote 10 tiny models" in result.stdout
    assert (tmp_path / "m/black-forest-labs/FLUX.1-dev/transformer/config.json").is_file()


@pytest.mark.parametrize("name", ["flux-dev", "lora-inpaint-sky"])
def test_tiny_weights_load_in_their_classes(tiny_models: Path, name: str) -> None:
    from safetensors.torch import load_file

    folder = tiny_models / MODELS[name].relative_dir
    if name == "flux-dev":
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(folder / "vae")
        out = vae.decode(torch.zeros(1, 16, 4, 8)).sample
        assert out.shape == (1, 3, 32, 64)
    else:
        state = load_file(folder / "lora.safetensors")
        assert all(k.startswith("transformer.") and (".lora_A." in k or ".lora_B." in k) for k in state)
