"""Tiny FLUX.1-dev / FLUX.1-Fill-dev twins: the real diffusers folder layout with shrunken widths.

Every convention the runtime depends on is kept: the hub's files (transformer and T5 sharded with
an index), 16 latent channels and an 8× VAE with FLUX's scaling/shift factors, 64 packed
transformer input channels (Fill: 384 in, 64 out), guidance embedding, 3-axis RoPE, T5 (512
tokens) + CLIP (77 tokens, pooled) text encoders, and the real scheduler configuration. Only
widths, depths and head sizes shrink.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from worldgen.models.tiny.random import randomize
from worldgen.models.tiny.serialization import shard_safetensors
from worldgen.models.tiny.tokenizers import write_clip_tokenizer, write_t5_tokenizer

# Real FLUX.1-dev scheduler configuration (scheduler/scheduler_config.json).
FLUX_SCHEDULER_CONFIG = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}

# Tiny widths. T5 d_model feeds joint_attention_dim; CLIP hidden feeds pooled_projection_dim.
TEXT_DIM = 32
POOLED_DIM = 32
WEIGHT_DTYPE = torch.bfloat16  # the real checkpoints are bf16
# Shard counts of the published FLUX.1-dev / FLUX.1-Fill-dev folders.
TRANSFORMER_SHARDS = 3
T5_SHARDS = 2


def _model_index(pipeline_class: str) -> dict[str, object]:
    return {
        "_class_name": pipeline_class,
        "_diffusers_version": "0.30.0.dev0",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "FluxTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }


def tiny_transformer_config(in_channels: int, out_channels: int | None) -> dict[str, object]:
    return {
        "patch_size": 1,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "num_layers": 2,
        "num_single_layers": 2,
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "joint_attention_dim": TEXT_DIM,
        "pooled_projection_dim": POOLED_DIM,
        "guidance_embeds": True,
        "axes_dims_rope": (4, 6, 6),
    }


def tiny_vae_config() -> dict[str, object]:
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": (8, 16, 16, 16),
        "layers_per_block": 1,
        "act_fn": "silu",
        "latent_channels": 16,
        "norm_num_groups": 4,
        "sample_size": 1024,
        "scaling_factor": 0.3611,
        "shift_factor": 0.1159,
        "latents_mean": None,
        "latents_std": None,
        "force_upcast": True,
        "use_quant_conv": False,
        "use_post_quant_conv": False,
        "mid_block_add_attention": True,
    }


def _seeded(seed: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + salt)


def write_flux_folder(folder: Path, *, fill: bool, seed: int) -> None:
    """Write one complete FLUX diffusers folder (dev or Fill)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(
        json.dumps(_model_index("FluxFillPipeline" if fill else "FluxPipeline"), indent=2) + "\n"
    )
    FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER_CONFIG).save_pretrained(folder / "scheduler")

    clip_vocab = write_clip_tokenizer(folder / "tokenizer")
    t5_vocab = write_t5_tokenizer(folder / "tokenizer_2")

    transformer = FluxTransformer2DModel(**tiny_transformer_config(384 if fill else 64, 64 if fill else None))
    randomize(transformer, _seeded(seed, 1 + int(fill)))
    transformer.to(WEIGHT_DTYPE).save_pretrained(folder / "transformer")
    shard_safetensors(folder / "transformer", "diffusion_pytorch_model.safetensors", TRANSFORMER_SHARDS)

    vae = AutoencoderKL(**tiny_vae_config())
    randomize(vae, _seeded(seed, 3), std=0.2)
    vae.to(WEIGHT_DTYPE).save_pretrained(folder / "vae")

    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=clip_vocab,
            hidden_size=POOLED_DIM,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            projection_dim=POOLED_DIM,
            hidden_act="quick_gelu",
            bos_token_id=0,
            eos_token_id=2,  # legacy value of the real config: pooling takes the highest token id (EOS)
            pad_token_id=1,
        )
    )
    randomize(clip, _seeded(seed, 4), std=0.2)
    clip.to(WEIGHT_DTYPE).save_pretrained(folder / "text_encoder")

    t5 = T5EncoderModel(
        T5Config(
            vocab_size=t5_vocab,
            d_model=TEXT_DIM,
            d_ff=64,
            d_kv=16,
            num_heads=2,
            num_layers=2,
            feed_forward_proj="gated-gelu",
            relative_attention_num_buckets=32,
            relative_attention_max_distance=128,
            tie_word_embeddings=False,
            is_encoder_decoder=True,
        )
    )
    randomize(t5, _seeded(seed, 5), std=0.2)
    t5.to(WEIGHT_DTYPE).save_pretrained(folder / "text_encoder_2")
    shard_safetensors(folder / "text_encoder_2", "model.safetensors", T5_SHARDS)
