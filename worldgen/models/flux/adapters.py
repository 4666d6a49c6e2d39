"""Switchable LoRA adapters on one resident transformer, as forward hooks.

The reference keeps a Fill pipeline per LoRA (Scene, Sky) in host RAM; we keep one Fill
transformer and add the active LoRA's low-rank term to each adapted layer's output:
y = W x + scale · (B (A x) + b), b being the LoRA's `lora_B.bias` if it has one (peft's forward,
and what fusing gives). The hooks sit after whatever the layer does with its weights (fp8 storage
casts, torchao fp8 compute), so adapters combine with every precision mode, and their factors stay
in the compute dtype.
"""

from __future__ import annotations

import torch
from torch.utils.hooks import RemovableHandle

from worldgen.models.flux.lora import LoraWeights

# down (A), up (B), B's bias or None, scale — in the compute dtype, on the transformer's device.
_Factors = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, float]


class LoraAdapters:
    def __init__(self, transformer: torch.nn.Module, adapters: dict[str, LoraWeights], dtype: torch.dtype) -> None:
        self.active: str | None = None
        device = next(p.device for p in transformer.parameters())
        modules = dict(transformer.named_modules())
        per_module: dict[str, dict[str, _Factors]] = {}
        for adapter, lora in adapters.items():
            for param_name, factor in lora.factors.items():
                module_name = param_name.removesuffix(".weight")
                module = modules.get(module_name)
                if module is None or not hasattr(module, "in_features"):
                    raise ValueError(f"adapter {adapter!r} adapts {module_name!r}, which the transformer does not have")
                if factor.bias is not None and getattr(module, "bias", None) is None:
                    raise ValueError(f"adapter {adapter!r} has a bias for {module_name!r}, which has none")
                factor = factor.widened(module.in_features)
                per_module.setdefault(module_name, {})[adapter] = (
                    factor.down.to(device=device, dtype=dtype),
                    factor.up.to(device=device, dtype=dtype),
                    None if factor.bias is None else factor.bias.to(device=device, dtype=dtype),
                    factor.scale,
                )
        self.names = sorted(adapters)
        self._handles: list[RemovableHandle] = [
            modules[name].register_forward_hook(self._hook(factors)) for name, factors in per_module.items()
        ]

    def _hook(self, factors: dict[str, _Factors]):
        def add_low_rank(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor):
            if self.active is None or self.active not in factors:
                return output
            down, up, bias, scale = factors[self.active]
            x = inputs[0].to(down.dtype)
            low_rank = torch.nn.functional.linear(x @ down.T, up, bias)
            return output + (scale * low_rank).to(output.dtype)

        return add_low_rank

    def activate(self, name: str | None) -> None:
        if name is not None and name not in self.names:
            raise KeyError(f"no adapter {name!r}; loaded: {', '.join(self.names)}")
        self.active = name

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.active = None
