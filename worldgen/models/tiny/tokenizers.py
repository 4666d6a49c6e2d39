"""Tiny tokenizers built in code, written in the same files as FLUX.1-dev's tokenizers.

CLIP: `vocab.json` + `merges.txt` (byte-level BPE, no `tokenizer.json`, as in the real repo).
T5: `tokenizer.json` (Unigram) + `spiece.model` (SentencePiece protobuf) + configs.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
_COMMON_BIGRAMS = ("th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "st", "es", "ky", "ea")


def _byte_level_chars() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (GPT-2 / CLIP convention)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def write_clip_tokenizer(folder: Path) -> int:
    """Write a CLIP BPE tokenizer; returns its vocabulary size (the EOS token has the highest id)."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_level_chars()
    vocab: dict[str, int] = {}
    for token in [*chars, *(c + "</w>" for c in chars)]:
        vocab[token] = len(vocab)
    merges = []
    for pair in _COMMON_BIGRAMS:
        for suffix in ("", "</w>"):
            merges.append(f"{pair[0]} {pair[1]}{suffix}")
            vocab[pair + suffix] = len(vocab)
    vocab[CLIP_BOS] = len(vocab)
    vocab[CLIP_EOS] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": CLIP_BOS, "eos_token": CLIP_EOS, "pad_token": CLIP_EOS, "unk_token": CLIP_EOS}
    config = {
        **special,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "errors": "replace",
        "model_max_length": 77,
        "tokenizer_class": "CLIPTokenizer",
    }
    _write_json(folder / "special_tokens_map.json", special)
    _write_json(folder / "tokenizer_config.json", config)
    return len(vocab)


def _t5_pieces() -> list[tuple[str, float]]:
    chars = string.ascii_letters + string.digits + ",.!?'-:;()"
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + word, -2.5) for word in ("a", "the", "of", "sky", "sea", "city", "forest", "room")]
    pieces += [("▁" + c, -3.0) for c in chars]
    pieces += [(c, -4.0) for c in chars]
    first: dict[str, tuple[str, float]] = {}
    for piece in pieces:
        first.setdefault(piece[0], piece)  # a piece keeps its first (highest) score
    return list(first.values())


def write_t5_tokenizer(folder: Path) -> int:
    """Write a T5 Unigram tokenizer; returns its size including the 100 sentinel tokens."""
    from transformers import T5Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    pieces = _t5_pieces()
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=100)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(folder)
    _write_spiece_model(folder / "spiece.model", pieces)
    _write_json(
        folder / "special_tokens_map.json",
        {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"},
    )
    return len(tokenizer)


def _write_spiece_model(path: Path, pieces: list[tuple[str, float]]) -> None:
    """Serialise the same vocabulary as a SentencePiece Unigram model (the slow tokenizer's file)."""
    from sentencepiece import sentencepiece_model_pb2 as spm_pb2

    model = spm_pb2.ModelProto()
    model.trainer_spec.model_type = spm_pb2.TrainerSpec.UNIGRAM
    model.trainer_spec.vocab_size = len(pieces)
    model.trainer_spec.pad_id, model.trainer_spec.eos_id, model.trainer_spec.unk_id = 0, 1, 2
    model.trainer_spec.bos_id = -1
    kinds = {"<pad>": spm_pb2.ModelProto.SentencePiece.CONTROL, "</s>": spm_pb2.ModelProto.SentencePiece.CONTROL}
    for piece, score in pieces:
        entry = model.pieces.add()
        entry.piece, entry.score = piece, score
        if piece == "<unk>":
            entry.type = spm_pb2.ModelProto.SentencePiece.UNKNOWN
        else:
            entry.type = kinds.get(piece, spm_pb2.ModelProto.SentencePiece.NORMAL)
    model.normalizer_spec.name = "identity"
    model.normalizer_spec.add_dummy_prefix = True
    model.normalizer_spec.remove_extra_whitespaces = True
    path.write_bytes(model.SerializeToString())


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
