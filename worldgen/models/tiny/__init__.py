"""`worldgen models make-tiny`: random-weight twins of every model, in the real on-disk formats.

The twins let every loading and inference path run offline on a CPU. Each writer is
deterministic for a seed; the whole set stays far below 20 MB.
"""

from __future__ import annotations

from pathlib import Path

import torch

from worldgen.defaults import write_tiny_marker
from worldgen.models.registry import get_spec
from worldgen.models.tiny.esrgan import write_esrgan
from worldgen.models.tiny.flux import tiny_transformer_config, write_flux_folder
from worldgen.models.tiny.grounding_dino import write_grounding_dino
from worldgen.models.tiny.lora import write_lora
from worldgen.models.tiny.moge import write_moge
from worldgen.models.tiny.zim import write_zim

# Logical LoRA name → (base model it adapts, rank of the tiny twin).
_LORAS = {
    "lora-pano-text": ("flux-dev", 4),
    "lora-pano-image": ("flux-fill", 4),
    "lora-inpaint-scene": ("flux-fill", 4),
    "lora-inpaint-sky": ("flux-fill", 2),
}


def make_tiny(root: Path, seed: int = 0) -> list[Path]:
    """Write every tiny model under `root`; returns the model folders written."""
    from diffusers import FluxTransformer2DModel

    root = Path(root)
    written = []
    for name, fill in (("flux-dev", False), ("flux-fill", True)):
        folder = root / get_spec(name).relative_dir
        write_flux_folder(folder, fill=fill, seed=seed)
        written.append(folder)
    for offset, (name, (base, rank)) in enumerate(sorted(_LORAS.items())):
        skeleton = FluxTransformer2DModel(**tiny_transformer_config(384 if base == "flux-fill" else 64, None))
        folder = root / get_spec(name).relative_dir
        write_lora(folder / "lora.safetensors", skeleton, rank=rank, generator=_generator(seed, 100 + offset))
        written.append(folder)
    moge = root / get_spec("moge").relative_dir
    write_moge(moge / "model.pt", _generator(seed, 200))
    esrgan = root / get_spec("esrgan").relative_dir
    write_esrgan(esrgan / "RealESRGAN_x2plus.pth", _generator(seed, 300))
    dino = root / get_spec("grounding-dino").relative_dir
    write_grounding_dino(dino, _generator(seed, 400))
    zim = root / get_spec("zim").relative_dir
    write_zim(zim / "zim_vit_l_2092", _generator(seed, 500))
    written += [moge, esrgan, dino, zim]
    write_tiny_marker(root, seed)
    return written


def _generator(seed: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + salt)
