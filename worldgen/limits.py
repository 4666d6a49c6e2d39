"""Limits and choices shared by the request schema and the stages (kept free of heavy imports,
so that client commands start fast)."""

from __future__ import annotations

from enum import StrEnum

MAX_PROMPT_CHARS = 2000
DEFAULT_HEIGHT, DEFAULT_WIDTH = 960, 1920
MIN_HEIGHT, MAX_HEIGHT = 64, 2048
MAX_STEPS = 200
MAX_LABELS = 8
MAX_LABEL_CHARS = 64
SEED_LIMIT = 2**32


class Precision(StrEnum):
    """How the FLUX transformer is stored and computed (worldgen/models/precision.py applies it)."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP8_STORAGE = "fp8-storage"
    FP8 = "fp8"


class StepCache(StrEnum):
    """diffusers cache hooks that skip transformer work on some steps (worldgen/models/flux/sampler.py)."""

    OFF = "off"
    FIRST_BLOCK = "first-block"
    TAYLORSEER = "taylorseer"


class VaeMode(StrEnum):
    """full-frame: the exact transform (default); reference: HunyuanWorld-1.0's tiled encode/decode, bit for bit."""

    FULL_FRAME = "full-frame"
    REFERENCE = "reference"


PRECISION_MODES = tuple(m.value for m in Precision)
STEP_CACHES = tuple(m.value for m in StepCache)
VAE_MODES = tuple(m.value for m in VaeMode)
