"""Response models of the API (requests are `worldgen.request.WorldRequest`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from worldgen.jobs.store import Job, Upload


class ErrorInfo(BaseModel):
    code: str
    message: str


class JobLinks(BaseModel):
    self: str
    artifacts: str
    events: str
    thumbnail: str | None = None
    """preview.jpg (1024×512), once the world has it."""


class WorldCost(BaseModel):
    """Instance-seconds × the instance's on-demand price (the container's time; a batch's startup
    shared among its worlds). SageMaker also bills provisioning and the image pull."""

    instance_type: str
    usd_per_hour: float
    batch_size: int
    startup_s: float
    loads_s: float
    compute_s: float
    instance_seconds: float
    usd: float


class JobOut(BaseModel):
    id: str
    status: str
    stage: str | None
    progress: float
    message: str | None
    seed: int
    request: dict[str, Any]
    error: ErrorInfo | None
    warnings: list[str]
    attempt: int
    backend: str
    backend_ref: str | None
    """The SageMaker processing job running the world; None for the local worker (its host:pid is internal)."""
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deleted: bool
    timings_s: dict[str, float]
    cost: WorldCost | None
    queue_position: int | None = None
    """1 for the next world to start (queued worlds only; in GET /v1/worlds/{id} and on submit)."""
    links: JobLinks

    @classmethod
    def of(cls, job: Job, queue_position: int | None = None) -> JobOut:
        base = f"/v1/worlds/{job.id}"
        error = ErrorInfo(code=job.error_code, message=job.error_message or "") if job.error_code else None
        return cls(
            id=job.id, status=job.status.value, stage=job.stage, progress=job.progress, message=job.message,
            seed=job.seed, request=job.request, error=error, warnings=job.warnings, attempt=job.attempt,
            backend=job.backend, backend_ref=job.backend_ref if job.backend != "local" else None,
            created_at=job.created_at, updated_at=job.updated_at,
            started_at=job.started_at, finished_at=job.finished_at, deleted=job.deleted, timings_s=job.timings,
            cost=WorldCost.model_validate(job.cost) if job.cost else None,
            links=JobLinks(
                self=base, artifacts=f"{base}/artifacts", events=f"{base}/events",
                thumbnail=f"{base}/artifacts/preview.jpg" if any(a["name"] == "preview.jpg" for a in job.artifacts)
                else None,
            ),
            queue_position=queue_position,
        )  # fmt: skip


class JobList(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class ArtifactOut(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    name: str
    title: str
    """What the file is, in a few words (e.g. "Background mesh (PLY)")."""
    description: str
    """What it holds and what opens it."""
    group: Literal["world", "layer", "image", "data"]
    """world: the whole world for a viewer; layer: one layer's mesh; image: panoramas, masks, the
    thumbnail; data: arrays, JSON, the manifest."""
    size: int
    sha256: str
    content_type: str
    url: str
    """This API's URL for the file (redirects to storage, or serves it)."""
    download_url: str | None = None
    """A presigned storage URL (S3), valid until `expires_at`; None for local storage."""
    expires_at: datetime | None = None


class ArtifactList(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    world_id: str
    items: list[ArtifactOut]
    archive_url: str
    """Every file in one .zip (GET; the world must have succeeded)."""


class UploadOut(BaseModel):
    id: str
    kind: str
    filename: str
    content_type: str
    size: int
    sha256: str
    width: int | None
    height: int | None
    created_at: datetime

    @classmethod
    def of(cls, upload: Upload) -> UploadOut:
        return cls(**{k: getattr(upload, k) for k in cls.model_fields})


class ErrorContent(BaseModel):
    """What went wrong: `code` for programs (e.g. not_found, invalid_request, rate_limited), `message`
    for people, `details` (null or an object, e.g. {"fields": [...]} for invalid_request)."""

    model_config = ConfigDict(extra="forbid")

    code: str
    message: str
    details: dict[str, Any] | None


class ErrorOut(BaseModel):
    """Every error answer of the API, from a route or from a middleware: {"error": {...}}."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorContent
