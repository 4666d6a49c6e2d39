"""`read_lora` + our fusing loader give diffusers' `load_lora_weights` + `fuse_lora` weights, format by format.

Each test writes a small random LoRA for the tiny FLUX transformers, fuses it both ways and compares every
tensor; it also checks which tensors the LoRA changed, so a format that silently loads nothing fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from worldgen.models.flux.adapters import LoraAdapters
from worldgen.models.flux.lora import LORA_FILE, LoraWeights, read_lora
from worldgen.models.flux.transformer import load_transformer
from worldgen.models.precision import Precision, PrecisionChoice

DEV = "black-forest-labs/FLUX.1-dev"
FILL = "black-forest-labs/FLUX.1-Fill-dev"
FP32 = PrecisionChoice(Precision.FP32, torch.float32, "test")
CPU = torch.device("cpu")
TOLERANCE = 1e-5
# Double-stream, single-stream and top-level layers; `proj_out` also suffix-matches every single block's
# proj_out, which peft then adapts with zero factors — the comparison covers that too.
MODULES = (
    "transformer_blocks.0.attn.to_q",
    "transformer_blocks.0.attn.to_out.0",
    "transformer_blocks.1.ff.net.2",
    "transformer_blocks.1.norm1.linear",
    "single_transformer_blocks.0.proj_out",
    "single_transformer_blocks.1.attn.to_v",
    "x_embedder",
    "proj_out",
)
RANKS = {"transformer_blocks.1.ff.net.2": 2, "single_transformer_blocks.1.attn.to_v": 2}  # others: 4


def _linears(repo: Path) -> dict[str, tuple[int, int]]:
    """Linear layer name → (out_features, in_features) of `repo`'s transformer."""
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel

    with init_empty_weights():
        model = FluxTransformer2DModel.from_config(FluxTransformer2DModel.load_config(repo / "transformer"))
    return {n: (m.out_features, m.in_features) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def _random(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return (torch.randn(*shape, generator=generator) * 0.3).to(torch.bfloat16)


def _peft_state(
    shapes: dict[str, tuple[int, int]],
    seed: int,
    *,
    down: str = "lora_A.weight",
    up: str = "lora_B.weight",
    alphas: dict[str, float] | None = None,
    biases: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for module in MODULES:
        out_features, in_features = shapes[module]
        rank = RANKS.get(module, 4)
        state[f"transformer.{module}.{down}"] = _random(generator, rank, in_features)
        state[f"transformer.{module}.{up}"] = _random(generator, out_features, rank)
        if module in biases:
            state[f"transformer.{module}.lora_B.bias"] = _random(generator, out_features)
        if alphas is not None:
            state[f"transformer.{module}.alpha"] = torch.tensor(alphas.get(module, 8.0))
    return state


def _write(folder: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True)
    save_file(state, str(folder / LORA_FILE), metadata={"format": "pt", **(metadata or {})})
    return folder


def _diffusers_fused(repo: Path, folder: Path) -> dict[str, torch.Tensor]:
    from diffusers import FluxPipeline, FluxTransformer2DModel

    transformer = FluxTransformer2DModel.from_pretrained(repo / "transformer", torch_dtype=torch.float32)
    pipe = FluxPipeline(
        scheduler=None, vae=None, text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
        transformer=transformer,
    )  # fmt: skip
    pipe.load_lora_weights(str(folder), weight_name=LORA_FILE)
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    return transformer.state_dict()


def fused_like_diffusers(repo: Path, folder: Path) -> tuple[set[str], float]:
    """Assert our fused weights equal diffusers'; returns (tensors the LoRA changed, max abs difference)."""
    ours = load_transformer(repo, device=CPU, precision=FP32, fuse=[read_lora(folder)]).state_dict()
    base = load_transformer(repo, device=CPU, precision=FP32).state_dict()
    theirs = _diffusers_fused(repo, folder)
    assert ours.keys() == theirs.keys()
    difference = max((ours[k] - theirs[k]).abs().max().item() for k in ours)
    assert difference <= TOLERANCE
    return {k for k in ours if not torch.equal(ours[k], base[k])}, difference


def _weights(modules: tuple[str, ...] | list[str]) -> set[str]:
    return {f"{m}.weight" for m in modules}


def test_diffusers_peft_keys_with_mixed_ranks(tiny_models: Path, tmp_path: Path) -> None:
    repo = tiny_models / DEV
    folder = _write(tmp_path / "peft", _peft_state(_linears(repo), seed=1))
    changed, _ = fused_like_diffusers(repo, folder)
    assert changed == _weights(MODULES)
    assert {f.scale for f in read_lora(folder).factors.values()} == {1.0}  # no alpha: alpha = rank


def test_alpha_tensors_scale_by_alpha_over_rank(tiny_models: Path, tmp_path: Path) -> None:
    repo = tiny_models / DEV
    alphas = {"transformer_blocks.0.attn.to_q": 1.0, "single_transformer_blocks.1.attn.to_v": 3.0}  # others: 8
    folder = _write(tmp_path / "alpha", _peft_state(_linears(repo), seed=2, alphas=alphas))
    changed, _ = fused_like_diffusers(repo, folder)
    assert changed == _weights(MODULES)
    scales = {name.removesuffix(".weight"): f.scale for name, f in read_lora(folder).factors.items()}
    assert scales["transformer_blocks.0.attn.to_q"] == 1.0 / 4
    assert scales["single_transformer_blocks.1.attn.to_v"] == 3.0 / 2
    assert scales["transformer_blocks.1.ff.net.2"] == 8.0 / 2 and scales["x_embedder"] == 8.0 / 4


def test_old_diffusers_lora_down_up_naming(tiny_models: Path, tmp_path: Path) -> None:
    repo = tiny_models / DEV
    state = _peft_state(_linears(repo), seed=3, down="lora.down.weight", up="lora.up.weight", alphas={})
    changed, _ = fused_like_diffusers(repo, _write(tmp_path / "old", state))
    assert changed == _weights(MODULES)


def _kohya_state(shapes: dict[str, tuple[int, int]], seed: int) -> tuple[dict[str, torch.Tensor], set[str]]:
    """kohya/sd-scripts keys (fused qkv, BFL block names) with alphas; returns the state and the diffusers
    modules it adapts. `img_in` converts to an unprefixed key that diffusers ignores, so it adapts nothing."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    adapted: list[str] = []

    def add(name: str, targets: list[str], rank: int, alpha: float, sparse: bool = False) -> None:
        out_features = sum(shapes[t][0] for t in targets)
        state[f"{name}.lora_down.weight"] = _random(generator, rank, shapes[targets[0]][1])
        up = _random(generator, out_features, rank)
        if sparse:  # block-diagonal up: diffusers splits the rank between q, k and v
            mask = torch.block_diag(*[torch.ones(shapes[t][0], rank // len(targets)) for t in targets])
            up = up * mask.to(up.dtype)
        state[f"{name}.lora_up.weight"] = up
        state[f"{name}.alpha"] = torch.tensor(alpha)
        adapted.extend(targets)

    for i in (0, 1):
        block, single = f"transformer_blocks.{i}", f"single_transformer_blocks.{i}"
        qkv = [f"{block}.attn.to_q", f"{block}.attn.to_k", f"{block}.attn.to_v"]
        add(f"lora_unet_double_blocks_{i}_img_attn_qkv", qkv, rank=4, alpha=2.0)
        add(f"lora_unet_double_blocks_{i}_img_attn_proj", [f"{block}.attn.to_out.0"], rank=4, alpha=8.0)
        add(f"lora_unet_double_blocks_{i}_img_mod_lin", [f"{block}.norm1.linear"], rank=2, alpha=1.0)
        added = [f"{block}.attn.add_q_proj", f"{block}.attn.add_k_proj", f"{block}.attn.add_v_proj"]
        add(f"lora_unet_double_blocks_{i}_txt_attn_qkv", added, rank=6, alpha=3.0, sparse=True)
        add(f"lora_unet_double_blocks_{i}_txt_mlp_0", [f"{block}.ff_context.net.0.proj"], rank=4, alpha=4.0)
        add(f"lora_unet_single_blocks_{i}_linear2", [f"{single}.proj_out"], rank=4, alpha=16.0)
        add(f"lora_unet_single_blocks_{i}_modulation_lin", [f"{single}.norm.linear"], rank=4, alpha=2.0)
    add("lora_unet_img_in", ["x_embedder"], rank=4, alpha=4.0)
    adapted.remove("x_embedder")
    return state, set(adapted)


def test_kohya_keys_with_alphas(tiny_models: Path, tmp_path: Path) -> None:
    repo = tiny_models / DEV
    state, adapted = _kohya_state(_linears(repo), seed=4)
    changed, _ = fused_like_diffusers(repo, _write(tmp_path / "kohya", state))
    assert changed == _weights(sorted(adapted))


@pytest.mark.parametrize("rslora", [False, True])
def test_lora_alpha_in_the_safetensors_metadata(tiny_models: Path, tmp_path: Path, rslora: bool) -> None:
    """diffusers' own `save_lora_weights(..., transformer_lora_adapter_metadata=...)` format."""
    repo = tiny_models / DEV
    config = {
        "r": 4,
        "lora_alpha": 6.0,
        "rank_pattern": {"^transformer_blocks.1.ff.net.2": 2, "^single_transformer_blocks.1.attn.to_v": 2},
        "alpha_pattern": {"single_transformer_blocks.0.proj_out": 1.0},
        "target_modules": list(MODULES),
        "use_rslora": rslora,
    }
    metadata = {"lora_adapter_metadata": json.dumps({f"transformer.{k}": v for k, v in config.items()})}
    folder = _write(tmp_path / "metadata", _peft_state(_linears(repo), seed=5), metadata)
    changed, _ = fused_like_diffusers(repo, folder)
    assert changed == _weights(MODULES)
    scales = {name.removesuffix(".weight"): f.scale for name, f in read_lora(folder).factors.items()}
    root = (lambda r: r**0.5) if rslora else (lambda r: r)
    assert scales["transformer_blocks.0.attn.to_q"] == pytest.approx(6.0 / root(4))
    assert scales["transformer_blocks.1.ff.net.2"] == pytest.approx(6.0 / root(2))
    assert scales["single_transformer_blocks.0.proj_out"] == pytest.approx(1.0 / root(4))


def test_lora_b_bias_is_added_to_the_layer_bias(tiny_models: Path, tmp_path: Path) -> None:
    """peft's `lora_bias=True` files carry a bias for every adapted layer (with some missing, peft leaves
    those layers' factors in the file's dtype and rounds their deltas: a quirk we do not copy)."""
    repo = tiny_models / DEV
    folder = _write(tmp_path / "bias", _peft_state(_linears(repo), seed=6, alphas={}, biases=MODULES))
    changed, _ = fused_like_diffusers(repo, folder)
    assert changed == _weights(MODULES) | {f"{m}.bias" for m in MODULES}


def test_a_flux_dev_lora_widens_into_fill(tiny_models: Path, tmp_path: Path) -> None:
    """Fill's x_embedder takes 384 inputs, a LoRA trained on FLUX.1-dev 64: diffusers pads A with zeros."""
    state = _peft_state(_linears(tiny_models / DEV), seed=7)
    changed, _ = fused_like_diffusers(tiny_models / FILL, _write(tmp_path / "dev-on-fill", state))
    assert changed == _weights(MODULES)


@pytest.mark.parametrize("style", ["peft", "kohya"])
def test_text_encoder_parts_are_refused(tiny_models: Path, tmp_path: Path, style: str) -> None:
    """diffusers loads these into CLIP; our runtime fuses into the transformer only, so it refuses them."""
    from diffusers import FluxPipeline

    repo = tiny_models / DEV
    generator = torch.Generator().manual_seed(8)
    if style == "peft":
        state = _peft_state(_linears(repo), seed=8)
        clip = "text_encoder.text_model.encoder.layers.0.self_attn.q_proj"
        state[f"{clip}.lora_A.weight"] = _random(generator, 4, 32)
        state[f"{clip}.lora_B.weight"] = _random(generator, 32, 4)
    else:
        state, _ = _kohya_state(_linears(repo), seed=8)
        clip = "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"
        state[f"{clip}.lora_down.weight"] = _random(generator, 4, 32)
        state[f"{clip}.lora_up.weight"] = _random(generator, 32, 4)
        state[f"{clip}.alpha"] = torch.tensor(2.0)
    folder = _write(tmp_path / style, state)
    with pytest.raises(ValueError, match="text-encoder") as refused:
        read_lora(folder)
    assert str(folder / LORA_FILE) in str(refused.value)
    assert "text_encoder.text_model.encoder.layers.0.self_attn." in str(refused.value)  # names the keys
    pipe = FluxPipeline.from_pretrained(repo, torch_dtype=torch.float32)
    if style == "peft":
        pipe.load_lora_weights(str(folder), weight_name=LORA_FILE)
        assert pipe.text_encoder.peft_config  # what we would have to reproduce
    else:  # diffusers 0.42 converts kohya's CLIP keys to a naming its own text-encoder loader rejects
        with pytest.raises(ValueError, match="infer state dict type"):
            pipe.load_lora_weights(str(folder), weight_name=LORA_FILE)


def test_formats_we_cannot_fuse_are_refused(tiny_models: Path, tmp_path: Path) -> None:
    state = _peft_state(_linears(tiny_models / DEV), seed=9)
    dora = {**state, "transformer.transformer_blocks.0.attn.to_q.lora_magnitude_vector": torch.ones(32)}
    with pytest.raises(ValueError, match="not a plain LoRA factor"):
        read_lora(_write(tmp_path / "dora", dora))
    both = {**state, "transformer.proj_out.alpha": torch.tensor(2.0)}
    metadata = {"lora_adapter_metadata": json.dumps({"transformer.r": 4, "transformer.lora_alpha": 4})}
    with pytest.raises(ValueError, match="both"):
        read_lora(_write(tmp_path / "both", both, metadata))
    unprefixed = {k.removeprefix("transformer."): v for k, v in state.items()}
    with pytest.raises(ValueError, match="not a FLUX transformer LoRA"):
        read_lora(_write(tmp_path / "unprefixed", unprefixed))


def test_hook_adapter_equals_fused_weights_with_bias_and_widening(tiny_models: Path, tmp_path: Path) -> None:
    repo = tiny_models / FILL
    biased = ("transformer_blocks.0.attn.to_q", "single_transformer_blocks.1.attn.to_v", "x_embedder")
    state = _peft_state(_linears(tiny_models / DEV), seed=10, alphas={"proj_out": 2.0}, biases=biased)
    lora: LoraWeights = read_lora(_write(tmp_path / "hooked", state))
    fused = load_transformer(repo, device=CPU, precision=FP32, fuse=[lora])
    hooked = load_transformer(repo, device=CPU, precision=FP32)
    adapters = LoraAdapters(hooked, {"scene": lora}, torch.float32)

    generator = torch.Generator().manual_seed(11)
    tokens, text = 16, 8
    inputs = {
        "hidden_states": torch.randn(1, tokens, 384, generator=generator),
        "encoder_hidden_states": torch.randn(1, text, 32, generator=generator),
        "pooled_projections": torch.randn(1, 32, generator=generator),
        "timestep": torch.tensor([0.7]),
        "guidance": torch.tensor([3.5]),
        "img_ids": torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(4.0), torch.arange(4.0), indexing="ij"))
        .reshape(3, -1)
        .T,
        "txt_ids": torch.zeros(text, 3),
    }
    with torch.no_grad():
        expected = fused(**inputs).sample
        base = hooked(**inputs).sample
        adapters.activate("scene")
        actual = hooked(**inputs).sample
    assert (base - expected).abs().max() > 1e-2  # the LoRA matters
    assert torch.allclose(actual, expected, atol=1e-5, rtol=1e-5), (actual - expected).abs().max()
