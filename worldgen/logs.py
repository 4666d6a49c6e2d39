"""Logging setup: our own messages at INFO, third-party chatter (load bars, import notices) muted."""

from __future__ import annotations

import logging
import os

_NOISY = (
    "torch.utils._pytree",  # torchao's import-time enum notices
    "diffusers",
    "transformers",
    "huggingface_hub",
    "accelerate",
)


def configure(level: int = logging.INFO) -> None:
    """Call once, before heavy imports, from command-line entry points."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import diffusers.utils.logging as diffusers_logging
        import transformers.utils.logging as transformers_logging
    except ImportError:  # pragma: no cover - both are hard dependencies
        return
    for module in (diffusers_logging, transformers_logging):
        module.set_verbosity_error()
        module.disable_progress_bar()
