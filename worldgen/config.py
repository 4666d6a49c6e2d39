"""Settings from the environment (`WORLDGEN_*`); the README has the table."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WORLDGEN_", extra="ignore")

    data_dir: Path = Field(Path("./worldgen-data"), description="Database, artifacts and logs of the embedded default.")
    models_dir: Path | None = Field(None, description="Root of the model files (default: DATA_DIR/models).")
    allow_downloads: bool = Field(False, description="Fetch missing model files from their source (hub / GitHub).")
    device: str | None = Field(None, description="Torch device for generation (default: cuda if available, else cpu).")
    precision: str = Field("auto", description="auto | fp32 | bf16 | fp8-storage | fp8")

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir if self.models_dir is not None else self.data_dir / "models"

    @property
    def hf_token(self) -> str | None:
        return os.environ.get("HF_TOKEN") or None
