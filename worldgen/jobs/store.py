"""The job store: every read and write of job state, on SQLite or PostgreSQL.

Status changes go through `transition`, which checks the state machine and applies the change
with optimistic concurrency (`version`), so concurrent writers never lose an update. Claiming
is a single UPDATE over a `FOR UPDATE SKIP LOCKED` subquery (PostgreSQL) or SQLite's single
writer, so two workers never take the same job.
"""

from __future__ import annotations

import base64
import builtins
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worldgen.jobs import webhooks
from worldgen.jobs.db import make_engine, migrate
from worldgen.jobs.ids import new_id, valid_id
from worldgen.jobs.state import TERMINAL, IllegalTransition, JobStatus, check_transition
from worldgen.jobs.tables import JobRow, UploadRow
from worldgen.request import WorldRequest


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobNotFound(LookupError):
    pass


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request body."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used for job {job_id} with a different request")
        self.key, self.job_id = key, job_id


@dataclass(frozen=True)
class Job:
    """A detached snapshot of one job row."""

    id: str
    status: JobStatus
    stage: str | None
    progress: float
    message: str | None
    request: dict[str, Any]
    seed: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    not_before: datetime | None
    error_code: str | None
    error_message: str | None
    backend: str
    backend_ref: str | None
    attempt: int
    max_attempts: int
    idempotency_key: str | None
    request_hash: str
    warnings: list[str] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    cost: dict[str, Any] | None = None
    """What the world cost (container/cost.py), from its manifest; None without a priced instance."""
    owner_key_id: str | None = None
    """The API key that made the world (None: made without a key, e.g. on loopback without auth)."""
    worker_id: str | None = None
    heartbeat_at: datetime | None = None
    deleted_at: datetime | None = None
    artifacts_removed: bool = False
    version: int = 1

    @classmethod
    def from_row(cls, row: JobRow) -> Job:
        values = {name: getattr(row, name) for name in cls.__dataclass_fields__}
        values["status"] = JobStatus(row.status)
        values["warnings"] = list(row.warnings or [])
        values["artifacts"] = list(row.artifacts or [])
        values["timings"] = dict(row.timings or {})
        return cls(**values)

    @property
    def world_request(self) -> WorldRequest:
        return WorldRequest.model_validate(self.request)

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


NOT_STARTED = "canceled before it started"


def canceled_message(job: Job) -> str:
    """Where a cancelled world stopped, in words: "canceled by request during depth (63 %)", or
    NOT_STARTED when no stage had begun."""
    if not job.stage or job.status is JobStatus.QUEUED:
        return NOT_STARTED
    return f"canceled by request during {job.stage} ({round(100 * job.progress)} %)"


@dataclass(frozen=True)
class Upload:
    id: str
    kind: str
    filename: str
    content_type: str
    size: int
    sha256: str
    width: int | None
    height: int | None
    storage_key: str
    created_at: datetime
    owner_key_id: str | None = None
    """The API key that uploaded it (None: without a key)."""

    @classmethod
    def from_row(cls, row: UploadRow) -> Upload:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


class JobStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> JobStore:
        engine = make_engine(url)
        migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")

    # ---- creating and reading -------------------------------------------------------------

    def create(
        self,
        request: WorldRequest,
        *,
        backend: str,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        max_attempts: int = 2,
        owner_key_id: str | None = None,
    ) -> tuple[Job, bool]:
        """Insert a queued job; returns (job, created). The request must carry its seed."""
        assert request.seed is not None, "the seed is resolved before a job is stored"
        digest = request_hash or request.fingerprint()
        if idempotency_key is not None:
            existing = self._by_idempotency_key(idempotency_key)
            if existing is not None:
                return self._replay(existing, idempotency_key, digest), False
        now = utcnow()
        row = JobRow(
            id=new_id(), status=JobStatus.QUEUED.value, stage=None, progress=0.0, message=None,
            request=request.model_dump(mode="json"), seed=request.seed, created_at=now, updated_at=now,
            backend=backend, attempt=0, max_attempts=max_attempts, idempotency_key=idempotency_key,
            request_hash=digest, warnings=[], artifacts=[], timings={}, artifacts_removed=False, version=1,
            owner_key_id=owner_key_id,
        )  # fmt: skip
        try:
            with self._session() as session:
                session.add(row)
                session.flush()
                webhooks.enqueue(session, Job.from_row(row), now)
        except IntegrityError:
            existing = self._by_idempotency_key(idempotency_key) if idempotency_key else None
            if existing is None:
                raise
            return self._replay(existing, idempotency_key or "", digest), False
        return Job.from_row(row), True

    def _replay(self, existing: Job, key: str, digest: str) -> Job:
        if existing.request_hash != digest:
            raise IdempotencyConflict(key, existing.id)
        return existing

    def is_idempotency_key(self, key: str | None) -> bool:
        """Whether a world was already made with this key (its replay is not a new world)."""
        return key is not None and self._by_idempotency_key(key) is not None

    def queue_position(self, job: Job) -> int | None:
        """1 + the queued worlds of its backend that start before it; None unless it is queued."""
        if job.status is not JobStatus.QUEUED:
            return None
        ahead = select(func.count()).where(
            JobRow.status == JobStatus.QUEUED.value, JobRow.backend == job.backend, JobRow.deleted_at.is_(None),
            or_(JobRow.created_at < job.created_at, and_(JobRow.created_at == job.created_at, JobRow.id < job.id)),
        )  # fmt: skip
        with self._session() as session:
            return int(session.scalar(ahead) or 0) + 1

    def active_count(self, owner_key_id: str) -> int:
        """Worlds of this API key that are queued or running."""
        active = [s.value for s in JobStatus if not s.terminal]
        query = select(func.count()).where(JobRow.owner_key_id == owner_key_id, JobRow.status.in_(active),
                                           JobRow.deleted_at.is_(None))  # fmt: skip
        with self._session() as session:
            return int(session.scalar(query) or 0)

    def _by_idempotency_key(self, key: str) -> Job | None:
        with self._session() as session:
            row = session.scalar(select(JobRow).where(JobRow.idempotency_key == key))
            return Job.from_row(row) if row else None

    def get(self, job_id: str) -> Job:
        if not valid_id(job_id):  # never sent to the database (PostgreSQL refuses a NUL byte)
            raise JobNotFound(job_id)
        with self._session() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise JobNotFound(job_id)
            return Job.from_row(row)

    def list(
        self,
        *,
        status: Sequence[JobStatus] | None = None,
        limit: int = 20,
        cursor: str | None = None,
        owner_key_id: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """Newest first, excluding deleted jobs (only `owner_key_id`'s if given); returns (page,
        cursor of the next page or None)."""
        query = select(JobRow).where(JobRow.deleted_at.is_(None))
        if owner_key_id is not None:
            query = query.where(JobRow.owner_key_id == owner_key_id)
        if status:
            query = query.where(JobRow.status.in_([s.value for s in status]))
        if cursor:
            created, job_id = decode_cursor(cursor)
            query = query.where(
                or_(JobRow.created_at < created, and_(JobRow.created_at == created, JobRow.id < job_id))
            )
        query = query.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit + 1)
        with self._session() as session:
            rows = list(session.scalars(query))
        jobs = [Job.from_row(r) for r in rows[:limit]]
        next_cursor = encode_cursor(jobs[-1]) if len(rows) > limit else None
        return jobs, next_cursor

    def changed_since(self, since: datetime, limit: int = 500) -> builtins.list[Job]:
        """Jobs updated at or after `since` (deleted ones included: a stream must see deletions)."""
        query = select(JobRow).where(JobRow.updated_at >= since).order_by(JobRow.updated_at).limit(limit)
        with self._session() as session:
            return [Job.from_row(r) for r in session.scalars(query)]

    def counts_by_status(self) -> dict[str, int]:
        query = select(JobRow.status, func.count()).where(JobRow.deleted_at.is_(None)).group_by(JobRow.status)
        with self._session() as session:
            counts = {s.value: 0 for s in JobStatus}
            counts.update({status: count for status, count in session.execute(query)})
            return counts

    def finished_timings(self, limit: int = 1000) -> builtins.list[dict[str, float]]:
        query = (
            select(JobRow.timings)
            .where(JobRow.status == JobStatus.SUCCEEDED.value)
            .order_by(JobRow.finished_at.desc())
            .limit(limit)
        )
        with self._session() as session:
            return [t or {} for t in session.scalars(query)]

    # ---- changing -------------------------------------------------------------------------

    def _update(self, job_id: str, mutate: Any, attempts: int = 20) -> Job:
        """Read, mutate (a function of the current Job returning column values), write with a
        version check; retried on concurrent modification."""
        for _ in range(attempts):
            current = self.get(job_id)
            values = mutate(current)
            if values is None:
                return current
            now = utcnow()
            values = {"updated_at": now, **values, "version": current.version + 1}
            with self._session() as session:
                result = session.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.version == current.version)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
                if getattr(result, "rowcount", 0) == 1 and "status" in values and values["status"] != current.status:
                    row = session.execute(
                        select(JobRow).where(JobRow.id == job_id).execution_options(populate_existing=True)
                    ).scalar_one()
                    webhooks.enqueue(session, Job.from_row(row), now)  # in the same transaction as the change
            if getattr(result, "rowcount", 0) == 1:  # an UPDATE's CursorResult
                return self.get(job_id)
        raise RuntimeError(f"job {job_id}: too much contention updating it")

    def transition(
        self, job_id: str, target: JobStatus, *, expect: Sequence[JobStatus] | None = None, **values: Any
    ) -> Job:
        """Move a job to `target` (checked against the state machine) and set other columns."""

        def mutate(job: Job) -> dict[str, Any]:
            if expect is not None and job.status not in expect:
                raise IllegalTransition(job_id, job.status, target)
            check_transition(job_id, job.status, target)
            changes: dict[str, Any] = {"status": target.value, **values}
            if target in TERMINAL:
                changes.setdefault("finished_at", utcnow())
            if target is JobStatus.RUNNING and job.started_at is None:
                changes.setdefault("started_at", utcnow())
            return changes

        return self._update(job_id, mutate)

    def set_fields(self, job_id: str, **values: Any) -> Job:
        """Change non-status columns (progress, backend_ref, warnings, ...)."""
        if "status" in values:
            raise ValueError("status changes go through transition()")
        return self._update(job_id, lambda job: dict(values))

    def record_progress(
        self,
        job_id: str,
        *,
        stage: str | None,
        progress: float,
        message: str | None,
        warnings: Sequence[str] = (),
        heartbeat: bool = True,
    ) -> Job:
        """Progress from a running job; ignored once the job is terminal (late reports)."""

        def mutate(job: Job) -> dict[str, Any] | None:
            if job.status.terminal:
                return None
            changes: dict[str, Any] = {"stage": stage, "progress": max(0.0, min(1.0, progress)), "message": message}
            if warnings:
                changes["warnings"] = list(dict.fromkeys([*job.warnings, *warnings]))
            if heartbeat:
                changes["heartbeat_at"] = utcnow()
            unchanged = all(getattr(job, k) == v for k, v in changes.items() if k != "heartbeat_at")
            return None if unchanged and not heartbeat else changes

        return self._update(job_id, mutate)

    def claim(self, worker_id: str, backend: str) -> Job | None:
        """Atomically take the oldest queued job that is due: queued → starting, attempt + 1."""
        now = utcnow()
        candidate = (
            select(JobRow.id)
            .where(*_due(backend, now))
            .order_by(JobRow.created_at, JobRow.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        statement = (
            update(JobRow)
            .where(JobRow.id == candidate, JobRow.status == JobStatus.QUEUED.value)
            .values(
                status=JobStatus.STARTING.value,
                worker_id=worker_id,
                heartbeat_at=now,
                updated_at=now,
                attempt=JobRow.attempt + 1,
                version=JobRow.version + 1,
                stage=None,
                progress=0.0,
                message=None,
                error_code=None,
                error_message=None,
            )
            .returning(JobRow.id)
            .execution_options(synchronize_session=False)
        )
        with self._session() as session:
            job_id = session.execute(statement).scalar_one_or_none()
            if job_id:
                webhooks.enqueue(session, Job.from_row(session.get_one(JobRow, job_id)), now)
        return self.get(job_id) if job_id else None

    def due_queued(self, backend: str, limit: int) -> builtins.list[Job]:
        """The oldest queued jobs that are due, in the order `claim` takes them (for batching)."""
        query = select(JobRow).where(*_due(backend, utcnow())).order_by(JobRow.created_at, JobRow.id).limit(limit)
        with self._session() as session:
            return [Job.from_row(r) for r in session.scalars(query)]

    def heartbeat(self, job_id: str) -> None:
        with self._session() as session:
            session.execute(update(JobRow).where(JobRow.id == job_id).values(heartbeat_at=utcnow()))

    def request_cancel(self, job_id: str) -> Job:
        """queued → canceled; starting/running → canceling; already canceling/canceled: unchanged.

        Raises IllegalTransition for succeeded or failed jobs."""

        def mutate(job: Job) -> dict[str, Any] | None:
            if job.status in (JobStatus.CANCELING, JobStatus.CANCELED):
                return None
            target = JobStatus.CANCELED if job.status is JobStatus.QUEUED else JobStatus.CANCELING
            check_transition(job_id, job.status, target)
            changes: dict[str, Any] = {"status": target.value}
            if target is JobStatus.CANCELED:
                changes.update(finished_at=utcnow(), error_code="canceled", error_message=NOT_STARTED)
            return changes

        return self._update(job_id, mutate)

    def mark_deleted(self, job_id: str) -> Job:
        return self._update(job_id, lambda job: None if job.deleted else {"deleted_at": utcnow()})

    def requeue_or_fail(
        self,
        job_id: str,
        *,
        code: str,
        message: str,
        delay: timedelta | None = None,
        refund: bool = False,
        warn: bool = True,
    ) -> Job:
        """Retry edge: back to queued while attempts remain, else failed with `code`.

        `refund` gives the attempt back (the job did not fail: the worker stopped, a quota was hit);
        `warn` records the lost attempt in the job's warnings."""

        def mutate(job: Job) -> dict[str, Any] | None:
            if job.status.terminal:
                return None
            if job.status is JobStatus.CANCELING:
                check_transition(job_id, job.status, JobStatus.CANCELED)
                return {"status": JobStatus.CANCELED.value, "finished_at": utcnow(), "worker_id": None,
                        "error_code": "canceled", "error_message": canceled_message(job)}  # fmt: skip
            if refund or job.attempt < job.max_attempts:
                check_transition(job_id, job.status, JobStatus.QUEUED)
                return {
                    "attempt": job.attempt - 1 if refund else job.attempt,
                    "status": JobStatus.QUEUED.value, "worker_id": None, "stage": None, "progress": 0.0,
                    "message": f"retrying after: {message}", "not_before": utcnow() + delay if delay else None,
                    "warnings": [*job.warnings, f"attempt {job.attempt} lost: {message}"] if warn else job.warnings,
                }  # fmt: skip
            check_transition(job_id, job.status, JobStatus.FAILED)
            return {"status": JobStatus.FAILED.value, "finished_at": utcnow(), "error_code": code,
                    "error_message": message, "worker_id": None}  # fmt: skip

        return self._update(job_id, mutate)

    def find_by_backend_ref(self, backend: str, reference: str) -> builtins.list[Job]:
        """Every job run by `reference` (the worlds of one SageMaker batch share their processing job)."""
        query = (
            select(JobRow)
            .where(JobRow.backend == backend, JobRow.backend_ref == reference)
            .order_by(JobRow.created_at, JobRow.id)
        )
        with self._session() as session:
            return [Job.from_row(r) for r in session.scalars(query)]

    def active_jobs(self, backend: str | None = None) -> builtins.list[Job]:
        query = select(JobRow).where(
            JobRow.status.in_([JobStatus.STARTING.value, JobStatus.RUNNING.value, JobStatus.CANCELING.value])
        )
        if backend:
            query = query.where(JobRow.backend == backend)
        with self._session() as session:
            return [Job.from_row(r) for r in session.scalars(query)]

    def expired_artifacts(self, older_than: datetime) -> builtins.list[Job]:
        """Finished jobs whose artifacts are due for removal under the retention policy."""
        query = select(JobRow).where(
            JobRow.status.in_([s.value for s in TERMINAL]),
            JobRow.finished_at < older_than,
            JobRow.artifacts_removed.is_(False),
        )
        with self._session() as session:
            return [Job.from_row(r) for r in session.scalars(query)]

    # ---- uploads --------------------------------------------------------------------------

    def add_upload(self, upload: Upload) -> Upload:
        with self._session() as session:
            session.add(UploadRow(**upload.__dict__))
        return upload

    def get_upload(self, upload_id: str) -> Upload | None:
        if not valid_id(upload_id):
            return None
        with self._session() as session:
            row = session.get(UploadRow, upload_id)
            return Upload.from_row(row) if row else None


def _due(backend: str, now: datetime) -> tuple[Any, ...]:
    """Queued, not deleted, of `backend`, and past any backoff."""
    return (
        JobRow.status == JobStatus.QUEUED.value,
        JobRow.deleted_at.is_(None),
        JobRow.backend == backend,
        or_(JobRow.not_before.is_(None), JobRow.not_before <= now),
    )


def encode_cursor(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


CURSOR_YEARS = (2000, 2200)
"""A cursor's date must fall in these years: a far-future one overflowed the database's
timestamp arithmetic (500); no job was made outside them."""


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = json.loads(raw)
        when = datetime.fromisoformat(created)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid cursor {cursor[:80]!r}") from exc
    if when.tzinfo is None or not CURSOR_YEARS[0] <= when.year <= CURSOR_YEARS[1] or not valid_id(str(job_id)):
        raise ValueError(f"invalid cursor {cursor[:80]!r}")
    return when, str(job_id)
