"""Deterministic random weights for tiny twins: independent of torch's global RNG and of the
order modules were built in (parameters are visited by name)."""

from __future__ import annotations

import torch


def randomize(module: torch.nn.Module, generator: torch.Generator, std: float = 0.05) -> torch.nn.Module:
    """Matrices ~ N(0, std²), biases ~ N(0, 0.01²), 1-D scales (norms, layer scales) ~ 1 + N(0, 0.05²)."""
    with torch.no_grad():
        for name, param in sorted(module.named_parameters()):
            if name.endswith("bias"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.01)
            elif param.ndim == 1:
                param.copy_(1.0 + torch.randn(param.shape, generator=generator) * 0.05)
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    return module
