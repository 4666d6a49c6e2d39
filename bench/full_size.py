"""Full-size models with random weights, built directly on the device (compute and memory do not
depend on the values). Same classes and configurations as the published checkpoints."""

from __future__ import annotations

import torch

FLUX_TRANSFORMER = {
    "patch_size": 1,
    "in_channels": 64,
    "out_channels": None,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}
FILL_TRANSFORMER = {**FLUX_TRANSFORMER, "in_channels": 384, "out_channels": 64}
VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 16,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
    "mid_block_add_attention": True,
}
T5_XXL = {
    "vocab_size": 32128,
    "d_model": 4096,
    "d_ff": 10240,
    "d_kv": 64,
    "num_heads": 64,
    "num_layers": 24,
    "feed_forward_proj": "gated-gelu",
    "tie_word_embeddings": False,
    "is_encoder_decoder": True,
}
CLIP_L = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "bos_token_id": 0,
    "eos_token_id": 2,
}


# ZIM's encoder trunk is SAM ViT-L-sized: 1024 wide, 24 blocks, windows of 14, global attention
# in blocks 5/11/17/23, neck to 256 channels (transformers' SamVisionConfig fields).
SAM_VIT_L = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "global_attn_indexes": [5, 11, 17, 23],
    "output_channels": 256,
    "image_size": 1024,
}


def randomize_(module: torch.nn.Module, std: float = 0.02) -> torch.nn.Module:
    """Random values in place (normal for matrices, ones for norms, zeros for biases)."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim >= 2:
                param.normal_(0, std)
            elif "norm" in name or name.endswith(("scale", "lambda1", "gamma")):
                param.fill_(1.0)
            else:
                param.zero_()
    return module


def on_device(factory, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:  # type: ignore[no-untyped-def]
    """Build a module straight on the device in `dtype` (no host copy), random values."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            module = factory()
    finally:
        torch.set_default_dtype(previous)
    return randomize_(module).eval().requires_grad_(False)


def flux_transformer(device: torch.device, fill: bool = False) -> torch.nn.Module:
    from diffusers import FluxTransformer2DModel

    config = FILL_TRANSFORMER if fill else FLUX_TRANSFORMER
    return on_device(lambda: FluxTransformer2DModel(**config), device, torch.bfloat16)


def vae(device: torch.device) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    return on_device(lambda: AutoencoderKL(**VAE), device, torch.bfloat16)


def t5(device: torch.device) -> torch.nn.Module:
    from transformers import T5Config, T5EncoderModel

    return on_device(lambda: T5EncoderModel(T5Config(**T5_XXL)), device, torch.bfloat16)


def clip(device: torch.device) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel

    return on_device(lambda: CLIPTextModel(CLIPTextConfig(**CLIP_L)), device, torch.bfloat16)


def params(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e9
