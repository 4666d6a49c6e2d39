"""The models worldgen uses, keyed by logical name, laid out as their hub repositories.

Every model lives under one root directory in the layout of its source repository
(`{root}/{owner}/{repo}/...`), so a directory filled by `huggingface_hub` or by
`worldgen models make-tiny` is read by exactly the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# A requirement is a file path, or a tuple of alternatives (e.g. sharded vs single-file weights).
Requirement = str | tuple[str, ...]

FLUX_FOLDERS = ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")

_FLUX_REQUIRED: tuple[Requirement, ...] = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "transformer/config.json",
    ("transformer/diffusion_pytorch_model.safetensors", "transformer/diffusion_pytorch_model.safetensors.index.json"),
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "text_encoder_2/config.json",
    ("text_encoder_2/model.safetensors", "text_encoder_2/model.safetensors.index.json"),
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    ("tokenizer_2/tokenizer.json", "tokenizer_2/spiece.model"),
)
_FLUX_PATTERNS = ("model_index.json", *(f"{folder}/*" for folder in FLUX_FOLDERS))


@dataclass(frozen=True)
class ModelSpec:
    """One logical model: its source and the files that must exist for it to load."""

    name: str
    repo_id: str
    """Hub repository id; also the folder under the models root."""
    subfolder: str = ""
    """Folder inside the repository that this model is (LoRAs share one repository)."""
    required: tuple[Requirement, ...] = ()
    """Paths relative to the model folder."""
    allow_patterns: tuple[str, ...] | None = None
    """What `huggingface_hub.snapshot_download` fetches (relative to the repository)."""
    url: str | None = None
    """Direct download URL for models that do not live on the hub (single file)."""
    gated: bool = False
    description: str = ""
    size_gb: float = 0.0
    """Approximate size of the published files (for sizing job volumes)."""
    tags: tuple[str, ...] = field(default=())

    @property
    def relative_dir(self) -> str:
        return f"{self.repo_id}/{self.subfolder}" if self.subfolder else self.repo_id


def _lora(name: str, folder: str, description: str, size_gb: float) -> ModelSpec:
    return ModelSpec(
        name=name,
        repo_id="tencent/HunyuanWorld-1",
        subfolder=folder,
        required=("lora.safetensors",),
        allow_patterns=(f"{folder}/lora.safetensors",),
        description=description,
        size_gb=size_gb,
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="flux-dev",
            repo_id="black-forest-labs/FLUX.1-dev",
            required=_FLUX_REQUIRED,
            allow_patterns=_FLUX_PATTERNS,
            gated=True,
            description="FLUX.1-dev (text → panorama base)",
            size_gb=33.8,
        ),
        ModelSpec(
            name="flux-fill",
            repo_id="black-forest-labs/FLUX.1-Fill-dev",
            required=_FLUX_REQUIRED,
            allow_patterns=_FLUX_PATTERNS,
            gated=True,
            description="FLUX.1-Fill-dev (image → panorama and inpainting base)",
            size_gb=33.8,
        ),
        _lora("lora-pano-text", "HunyuanWorld-PanoDiT-Text", "HunyuanWorld text → panorama LoRA", 0.48),
        _lora("lora-pano-image", "HunyuanWorld-PanoDiT-Image", "HunyuanWorld image → panorama LoRA", 0.48),
        _lora("lora-inpaint-scene", "HunyuanWorld-PanoInpaint-Scene", "HunyuanWorld scene inpainting LoRA", 0.48),
        _lora("lora-inpaint-sky", "HunyuanWorld-PanoInpaint-Sky", "HunyuanWorld sky inpainting LoRA", 0.12),
        ModelSpec(
            name="moge",
            repo_id="Ruicheng/moge-vitl",
            required=("model.pt",),
            allow_patterns=("model.pt",),
            description="MoGe-1 ViT-L monocular geometry",
            size_gb=1.26,
        ),
        ModelSpec(
            name="grounding-dino",
            repo_id="IDEA-Research/grounding-dino-tiny",
            required=("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer_config.json"),
            allow_patterns=("*.json", "model.safetensors", "vocab.txt"),
            description="Grounding DINO tiny (open-vocabulary detection)",
            size_gb=0.69,
        ),
        ModelSpec(
            name="zim",
            repo_id="naver-iv/zim-anything-vitl",
            required=("zim_vit_l_2092/encoder.onnx", "zim_vit_l_2092/decoder.onnx"),
            allow_patterns=("zim_vit_l_2092/*.onnx",),
            description="ZIM ViT-L matting (ONNX encoder/decoder)",
            size_gb=1.2,
        ),
        ModelSpec(
            name="esrgan",
            repo_id="xinntao/Real-ESRGAN",
            required=("RealESRGAN_x2plus.pth",),
            url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1/RealESRGAN_x2plus.pth",
            description="Real-ESRGAN x2plus super-resolution",
            size_gb=0.07,
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise KeyError(f"unknown model {name!r}; known models: {known}") from None


def _present(folder: Path, requirement: Requirement) -> bool:
    options = (requirement,) if isinstance(requirement, str) else requirement
    return any((folder / option).is_file() for option in options)


def missing_files(folder: Path, spec: ModelSpec) -> list[Path]:
    """Required files of `spec` that are absent from `folder` (first alternative named)."""
    missing = []
    for requirement in spec.required:
        if not _present(folder, requirement):
            first = requirement if isinstance(requirement, str) else requirement[0]
            missing.append(folder / first)
    return missing
