"""Shared fixtures. Tests never touch the network: the hub is offline and models are tiny twins."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from worldgen.api.app import create_app
from worldgen.backends.local import LocalWorker, WorkerConfig
from worldgen.config import Settings
from worldgen.jobs.store import JobStore
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
def forward_calls(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Record the hidden states of every real FLUX transformer forward (spy, not a stub)."""
    from diffusers import FluxTransformer2DModel

    calls: list[torch.Tensor] = []
    original = FluxTransformer2DModel.forward

    def spy(self, hidden_states, *args, **kwargs):
        calls.append(hidden_states.detach().clone())
        return original(self, hidden_states, *args, **kwargs)

    monkeypatch.setattr(FluxTransformer2DModel, "forward", spy)
    return calls


@pytest.fixture
def cpu_runtime(tiny_models: Path) -> ModelRuntime:
    return ModelRuntime.create(tiny_models, device="cpu", precision="fp32")


PG_ADMIN_URL = os.environ.get("WORLDGEN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"worldgen_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(database_url: str) -> Iterator[JobStore]:
    job_store = JobStore.open(database_url)
    yield job_store
    job_store.close()


@pytest.fixture
def local_service(tmp_path: Path, tiny_models: Path) -> Iterator[tuple[TestClient, LocalWorker]]:
    """(client, worker): the app on tiny models without its own worker, and a process-mode worker
    over the same store whose `run_once()` the test calls when it wants a world made."""
    settings = Settings(data_dir=tmp_path / "data", models_dir=tiny_models)
    with TestClient(create_app(settings, run_worker=False)) as client:
        state = client.app.state.worldgen
        config = WorkerConfig(work_dir=tmp_path / "work", models_dir=tiny_models, poll_interval=0.1, mode="process")
        yield client, LocalWorker(state.store, state.storage, config)
