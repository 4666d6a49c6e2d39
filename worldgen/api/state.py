"""What every request handler needs: the store, the artifact storage and the settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from worldgen.api.rate_limits import RateLimits
from worldgen.config import Settings
from worldgen.jobs.store import JobStore
from worldgen.storage.base import ArtifactStore

if TYPE_CHECKING:
    from worldgen.backends.sagemaker.client import SageMakerClient


@dataclass
class AppState:
    settings: Settings
    store: JobStore
    storage: ArtifactStore
    backend: str
    auth_required: bool = False
    """Every /v1 request needs an API key (api/auth.py decides from WORLDGEN_AUTH and the address)."""
    rate_limits: RateLimits = field(default_factory=lambda: RateLimits(20.0))
    sagemaker: SageMakerClient | None = None
    """Made on first use by the SageMaker events endpoint (to verify events)."""


def app_state(request: Request) -> AppState:
    return request.app.state.worldgen
