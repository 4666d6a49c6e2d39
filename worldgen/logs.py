"""Logging setup: our own messages at INFO, third-party chatter (load bars, import notices) muted."""

from __future__ import annotations

import logging
import os

_NOISY = ("torch.utils._pytree", "diffusers", "transformers", "huggingface_hub", "accelerate", "httpx")


def configure(level: int = logging.INFO) -> None:
    """Call once from command-line entry points; imports nothing heavy."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_model_libraries() -> None:
    """Silence diffusers/transformers progress bars (call where models are about to load)."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    for module in (diffusers_logging, transformers_logging):
        module.set_verbosity_error()
        module.disable_progress_bar()
