"""Limits and choices shared by the request schema and the stages (kept free of heavy imports,
so that client commands start fast)."""

from __future__ import annotations

MAX_PROMPT_CHARS = 2000
DEFAULT_HEIGHT, DEFAULT_WIDTH = 960, 1920
MIN_HEIGHT, MAX_HEIGHT = 64, 2048
MAX_STEPS = 200
MAX_LABELS = 8
MAX_LABEL_CHARS = 64
SEED_LIMIT = 2**32
PRECISION_MODES = ("auto", "fp32", "bf16", "fp8-storage", "fp8")
STEP_CACHES = ("off", "first-block", "taylorseer")
VAE_MODES = ("full-frame", "reference")
"""full-frame: the exact transform (default); reference: HunyuanWorld-1.0's tiled encode/decode, bit for bit."""
