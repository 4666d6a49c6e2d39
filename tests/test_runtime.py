"""Model residency: a released model gives its memory back at once, whoever still holds it."""

from __future__ import annotations

import weakref

import pytest
import torch

from worldgen.models.runtime import release


def _held_module() -> tuple[torch.nn.Module, weakref.ref]:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    model.registry = [model]  # a reference cycle, as diffusers' hook registry makes
    return model, weakref.ref(model[0].weight)


def test_release_moves_plain_weights_to_meta() -> None:
    model, weight = _held_module()
    release(model)
    assert weight() is None
    assert model[0].weight.device.type == "meta"


def test_release_drops_weights_that_cannot_move_to_meta(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchao's fp8 tensors refuse `to_empty(meta)`; the module must still let go of them."""

    def refuse(self: torch.nn.Module, *, device: torch.device) -> torch.nn.Module:
        raise NotImplementedError("this tensor subclass cannot move to meta")

    monkeypatch.setattr(torch.nn.Module, "to_empty", refuse)
    model, weight = _held_module()
    norm = weakref.ref(model[1].weight)
    release(model)  # `model` is still referenced here, and in a cycle
    assert weight() is None and norm() is None
    assert not list(model.parameters())
