"""What every request handler needs: the store, the artifact storage and the settings."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from worldgen.config import Settings
from worldgen.jobs.store import JobStore
from worldgen.storage.base import ArtifactStore


@dataclass
class AppState:
    settings: Settings
    store: JobStore
    storage: ArtifactStore
    backend: str


def app_state(request: Request) -> AppState:
    return request.app.state.worldgen
