"""Shared fixtures. Tests never touch the network: the hub is offline and models are tiny twins."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pathlib import Path

import pytest
import torch

from worldgen.models.runtime import ModelRuntime

torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny model directory (seed 0) for the whole session; tests must not modify it."""
    from worldgen.models.tiny import make_tiny

    root = tmp_path_factory.mktemp("tiny-models")
    make_tiny(root, seed=0)
    return root


@pytest.fixture
def cpu_runtime(tiny_models: Path) -> ModelRuntime:
    return ModelRuntime.create(tiny_models, device="cpu", precision="fp32")
