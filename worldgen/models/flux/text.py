"""Prompt encoding with FLUX's two text encoders, one resident at a time.

CLIP-L gives the pooled vector (77 tokens), T5-XXL the sequence (512 tokens, padded); both
truncate like the reference and a truncation becomes a job warning rather than an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from worldgen.models.runtime import ModelRuntime
from worldgen.progress import Progress

T5_MAX_TOKENS = 512
CLIP_MAX_TOKENS = 77


@dataclass(frozen=True)
class TextEmbeddings:
    sequence: torch.Tensor
    """T5 hidden states, (1, 512, joint_attention_dim)."""
    pooled: torch.Tensor
    """CLIP pooled output, (1, pooled_projection_dim)."""


def encode_prompts(
    runtime: ModelRuntime, model: str, prompts: Sequence[str], progress: Progress | None = None
) -> list[TextEmbeddings]:
    """Encode each prompt (positive and negative alike) with the text encoders of FLUX `model`."""
    from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

    repo = runtime.path(model)
    device, dtype = runtime.device, runtime.dtype
    clip_tokenizer = CLIPTokenizer.from_pretrained(repo / "tokenizer")
    t5_tokenizer = T5TokenizerFast.from_pretrained(repo / "tokenizer_2")
    if progress is not None:
        for prompt in prompts:
            _warn_truncation(progress, prompt, clip_tokenizer, CLIP_MAX_TOKENS, "CLIP")
            _warn_truncation(progress, prompt, t5_tokenizer, T5_MAX_TOKENS, "T5")

    def load_clip() -> CLIPTextModel:
        return CLIPTextModel.from_pretrained(repo / "text_encoder", dtype=dtype).to(device)

    def load_t5() -> T5EncoderModel:
        return T5EncoderModel.from_pretrained(repo / "text_encoder_2", dtype=dtype, device_map=device)

    pooled = []
    with runtime.hold(f"{model}:text_encoder", "clip", load_clip) as clip, torch.no_grad():
        for prompt in prompts:
            ids = clip_tokenizer(
                [prompt], padding="max_length", max_length=CLIP_MAX_TOKENS, truncation=True, return_tensors="pt"
            ).input_ids.to(device)
            pooled.append(clip(ids, output_hidden_states=False).pooler_output.to(dtype))
    sequences = []
    with runtime.hold(f"{model}:text_encoder_2", "t5", load_t5) as t5, torch.no_grad():
        for prompt in prompts:
            ids = t5_tokenizer(
                [prompt], padding="max_length", max_length=T5_MAX_TOKENS, truncation=True, return_tensors="pt"
            ).input_ids.to(device)
            sequences.append(t5(ids, output_hidden_states=False)[0].to(dtype))
    return [TextEmbeddings(s, p) for s, p in zip(sequences, pooled, strict=True)]


def _warn_truncation(progress: Progress, prompt: str, tokenizer, limit: int, which: str) -> None:
    count = len(tokenizer(prompt, truncation=False).input_ids)
    if count > limit:
        progress.warn(f"prompt truncated: {which} keeps {limit} tokens, the prompt has {count}")
