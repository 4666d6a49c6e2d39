"""Settings from the environment (`WORLDGEN_*`); the README has the table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# On-demand SageMaker Processing prices (USD/hour, us-east-1, as published in 2025); estimates only.
DEFAULT_PRICES = {
    "ml.g5.2xlarge": 1.515,
    "ml.g5.4xlarge": 2.03,
    "ml.g6.2xlarge": 1.222,
    "ml.g6.4xlarge": 1.658,
    "ml.g6e.2xlarge": 2.808,
    "ml.g6e.4xlarge": 3.761,
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WORLDGEN_", extra="ignore")

    data_dir: Path = Field(Path("./worldgen-data"), description="Database, artifacts, work files and logs.")
    database_url: str | None = Field(None, description="SQLAlchemy URL (default: SQLite in the data dir).")
    storage_url: str | None = Field(None, description="Artifact storage: a directory or s3://bucket/prefix.")
    models_dir: Path | None = Field(None, description="Root of the model files (default: DATA_DIR/models).")
    allow_downloads: bool = Field(False, description="Fetch missing model files from their source.")
    device: str | None = Field(None, description="Torch device for generation (default: cuda if present).")
    precision: str = Field("auto", description="Default precision: auto | fp32 | bf16 | fp8-storage | fp8.")
    backend: str = Field("local", description="Where jobs run: local | sagemaker.")
    worker_concurrency: int = Field(1, ge=1, description="Jobs a local worker runs at once (GPU concurrency).")
    worker_mode: Literal["warm", "process"] = Field(
        "warm", description="warm: one long-lived process per slot keeps models loaded; process: one per world."
    )
    max_attempts: int = Field(2, ge=1, description="Attempts per job before it fails (worker lost, crashes).")
    cancel_grace_seconds: float = Field(30.0, gt=0, description="SIGTERM → SIGKILL delay when cancelling.")
    lost_after_seconds: float = Field(120.0, gt=0, description="Heartbeat age after which a worker is lost.")
    retention_days: float | None = Field(None, gt=0, description="Remove artifacts of finished jobs after N days.")
    server_url: str = Field("http://127.0.0.1:8000", description="API base URL for the CLI client commands.")
    auth: Literal["auto", "required", "off"] = Field(
        "auto", description="API keys: auto = required unless the server listens on loopback."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host names the API answers to (JSON list; loopback names when on loopback)."
    )
    key_requests_per_second: float = Field(
        20.0, gt=0, description="Requests per second per API key (bursts of twice that); 429 beyond."
    )
    key_active_worlds: int = Field(4, ge=1, description="Worlds one API key may have queued or running; 429 beyond.")
    webhook_secret: str | None = Field(
        None, description="Signing secret of webhooks, whsec_<base64> (Standard Webhooks); webhooks need it."
    )
    webhook_allow_private: bool = Field(False, description="Allow webhook targets in loopback/private ranges.")
    webhook_retry_hours: float = Field(24.0, gt=0, description="How long a failing webhook is retried.")
    webhook_backoff_seconds: float = Field(5.0, gt=0, description="First retry delay (doubling, at most 1 h).")
    max_json_bytes: int = Field(1024 * 1024, ge=1024, description="Largest request body other than an upload (413).")
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="A request body silent this long mid-way gets 408; unfinished headers, a closed connection.",
    )
    upload_max_bytes: int = Field(20 * 1024 * 1024, description="Largest PNG/JPEG upload.")
    upload_max_npy_bytes: int = Field(64 * 1024 * 1024, description="Largest .npy distance-map upload.")
    download_url_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600, description="Lifetime of presigned URLs.")
    models_url: str | None = Field(None, description="S3 prefix of the model files that SageMaker jobs mount.")
    sagemaker_role_arn: str | None = Field(None, description="Execution role of the processing jobs.")
    sagemaker_image_uri: str | None = Field(None, description="ECR URI of the worldgen image.")
    sagemaker_instance_type: str = Field("ml.g5.2xlarge", description="Processing instance type.")
    sagemaker_max_concurrent_jobs: int = Field(2, ge=1, description="Cap on concurrent SageMaker jobs.")
    sagemaker_batch_size: int = Field(4, ge=1, le=8, description="Worlds one processing job runs (models loaded once).")
    sagemaker_batch_wait_seconds: float = Field(
        30.0, ge=0, description="How long a short batch waits for more worlds before it is sent."
    )
    sagemaker_max_runtime_seconds: int = Field(7200, ge=60, le=432000, description="MaxRuntimeInSeconds.")
    sagemaker_volume_gb: int | None = Field(None, ge=1, le=16384, description="Override the computed volume.")
    sagemaker_poll_seconds: float = Field(30.0, gt=0, description="Status poll interval.")
    sagemaker_max_queue_seconds: float = Field(
        6 * 3600, gt=0, description="How long a world waits for SageMaker quota or capacity before it fails."
    )
    sagemaker_events_secret: str | None = Field(None, description="Shared secret of the EventBridge endpoint.")
    sagemaker_price_table: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES), description="USD per instance-hour, by instance type (JSON)."
    )

    @property
    def resolved_models_dir(self) -> Path:
        """WORLDGEN_MODELS_DIR; else DATA_DIR/models, or DATA_DIR/tiny-models (what scripts/serve writes)
        where only that one exists."""
        if self.models_dir is not None:
            return self.models_dir
        models, tiny = self.data_dir / "models", self.data_dir / "tiny-models"
        return tiny if not models.exists() and tiny.is_dir() else models

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'worldgen.db').resolve()}"

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or str((self.data_dir / "artifacts").resolve())

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "work"

    @property
    def hf_token(self) -> str | None:
        return os.environ.get("HF_TOKEN") or None


def open_storage(url: str):
    """An artifact store for a storage URL: a local directory (default) or s3://bucket/prefix."""
    if url.startswith("s3://"):
        from worldgen.storage.s3 import S3ArtifactStore

        return S3ArtifactStore(url)
    from worldgen.storage.local import LocalArtifactStore

    return LocalArtifactStore(Path(url.removeprefix("file://")))
