"""A tiny Grounding DINO twin in the layout of IDEA-Research/grounding-dino-tiny (transformers):
config.json + model.safetensors + preprocessor/tokenizer files. Tiny Swin backbone, tiny BERT
text encoder, two decoder layers (transformers needs ≥ 2 with a shared box head)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

from worldgen.models.tiny.random import randomize

WORDS = ("sky", "tree", "trees", "chair", "table", "house", "building", "car", "person", "lamp", "plant", "rock")


def _vocabulary() -> list[str]:
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    symbols = list(".,!?'-")
    letters = list(string.ascii_lowercase + string.digits)
    return special + symbols + letters + [f"##{c}" for c in letters] + list(WORDS)


def write_grounding_dino(folder: Path, generator: torch.Generator) -> None:
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        SwinConfig,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocabulary = _vocabulary()
    tokenizer = BertTokenizer(vocab={token: index for index, token in enumerate(vocabulary)}, do_lower_case=True)
    backbone = SwinConfig(
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 2, 2, 4],
        window_size=7,
        out_indices=[2, 3, 4],
        out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=len(vocabulary),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    config = GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        num_queries=30,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=256,
    )
    model = GroundingDinoForObjectDetection(config)
    randomize(model, generator)
    model.save_pretrained(folder)
    # The published repository's files: preprocessor_config.json, tokenizer files, vocab.txt.
    GroundingDinoImageProcessor().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(vocabulary) + "\n")
    special = {
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
        "pad_token": "[PAD]",
        "sep_token": "[SEP]",
        "unk_token": "[UNK]",
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
