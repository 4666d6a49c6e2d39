"""The job store, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest

from worldgen.jobs.state import IllegalTransition, JobStatus
from worldgen.jobs.store import IdempotencyConflict, JobNotFound, JobStore, utcnow
from worldgen.request import WorldRequest


def req(prompt: str = "a lake", seed: int = 1, **extra: object) -> WorldRequest:
    return WorldRequest(prompt=prompt, seed=seed, **extra)


def test_create_get_and_roundtrip(store: JobStore) -> None:
    job, created = store.create(req(labels_fg1=["tree"]), backend="local")
    assert created and job.status is JobStatus.QUEUED and job.attempt == 0 and job.version == 1
    again = store.get(job.id)
    assert again == job
    assert again.world_request.labels_fg1 == ["tree"]
    assert again.created_at.tzinfo is not None
    with pytest.raises(JobNotFound):
        store.get("nope")


def test_list_newest_first_with_cursor_and_filter(store: JobStore) -> None:
    ids = [store.create(req(f"p{i}", seed=i), backend="local")[0].id for i in range(7)]
    page, cursor = store.list(limit=3)
    assert [j.id for j in page] == ids[::-1][:3]
    seen = [j.id for j in page]
    while cursor:
        page, cursor = store.list(limit=3, cursor=cursor)
        seen += [j.id for j in page]
    assert seen == ids[::-1]
    store.request_cancel(ids[0])
    canceled, _ = store.list(status=[JobStatus.CANCELED])
    assert [j.id for j in canceled] == [ids[0]]
    store.mark_deleted(ids[1])
    assert ids[1] not in [j.id for j in store.list(limit=50)[0]]
    with pytest.raises(ValueError, match="invalid cursor"):
        store.list(cursor="!!!")


def test_idempotency(store: JobStore) -> None:
    first, created = store.create(req(), backend="local", idempotency_key="k1")
    again, created_again = store.create(req(), backend="local", idempotency_key="k1")
    assert created and not created_again and again.id == first.id
    with pytest.raises(IdempotencyConflict):
        store.create(req("another"), backend="local", idempotency_key="k1")


def test_concurrent_idempotent_submissions_make_one_job(store: JobStore) -> None:
    results = []

    def submit() -> None:
        results.append(store.create(req(), backend="local", idempotency_key="race")[0].id)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 8


def test_concurrent_claimers_never_share_a_job(store: JobStore) -> None:
    jobs = [store.create(req(seed=i), backend="local")[0].id for i in range(30)]
    store.create(req(seed=99), backend="sagemaker")  # another backend's job is never claimed here
    claimed: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def claimer(index: int) -> None:
        barrier.wait()
        while (job := store.claim(f"w{index}", "local")) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(jobs)
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert all(store.get(j).status is JobStatus.STARTING and store.get(j).attempt == 1 for j in jobs)


def test_claim_oldest_first_and_respects_not_before(store: JobStore) -> None:
    first = store.create(req(seed=1), backend="local")[0]
    second = store.create(req(seed=2), backend="local")[0]
    store.set_fields(first.id, not_before=utcnow() + timedelta(hours=1))
    assert store.claim("w", "local").id == second.id
    assert store.claim("w", "local") is None


def test_transitions_are_checked_in_one_place(store: JobStore) -> None:
    job = store.create(req(), backend="local")[0]
    with pytest.raises(IllegalTransition):
        store.transition(job.id, JobStatus.SUCCEEDED)
    claimed = store.claim("w", "local")
    running = store.transition(claimed.id, JobStatus.RUNNING)
    assert running.started_at is not None
    with pytest.raises(IllegalTransition):
        store.transition(job.id, JobStatus.RUNNING, expect=[JobStatus.STARTING])
    done = store.transition(job.id, JobStatus.SUCCEEDED, artifacts=[{"name": "a.png"}])
    assert done.finished_at is not None and done.artifacts == [{"name": "a.png"}]
    with pytest.raises(IllegalTransition):
        store.transition(job.id, JobStatus.QUEUED)
    with pytest.raises(ValueError, match="transition"):
        store.set_fields(job.id, status="queued")


def test_progress_and_late_reports(store: JobStore) -> None:
    job = store.create(req(), backend="local")[0]
    store.claim("w", "local")
    store.transition(job.id, JobStatus.RUNNING)
    updated = store.record_progress(job.id, stage="panorama", progress=0.4, message="step 20/50", warnings=["w1"])
    assert (updated.stage, updated.progress, updated.warnings) == ("panorama", 0.4, ["w1"])
    updated = store.record_progress(job.id, stage="panorama", progress=1.7, message=None, warnings=["w1", "w2"])
    assert updated.progress == 1.0 and updated.warnings == ["w1", "w2"]
    store.transition(job.id, JobStatus.FAILED, error_code="x", error_message="y")
    late = store.record_progress(job.id, stage="mesh", progress=0.1, message=None)
    assert late.stage == "panorama" and late.status is JobStatus.FAILED


def test_cancel_semantics(store: JobStore) -> None:
    queued = store.create(req(seed=1), backend="local")[0]
    assert store.request_cancel(queued.id).status is JobStatus.CANCELED
    assert store.request_cancel(queued.id).status is JobStatus.CANCELED  # idempotent
    running = store.create(req(seed=2), backend="local")[0]
    store.claim("w", "local")
    store.transition(running.id, JobStatus.RUNNING)
    assert store.request_cancel(running.id).status is JobStatus.CANCELING
    assert store.request_cancel(running.id).status is JobStatus.CANCELING
    done = store.create(req(seed=3), backend="local")[0]
    store.claim("w", "local")
    store.transition(done.id, JobStatus.RUNNING)
    store.transition(done.id, JobStatus.SUCCEEDED)
    with pytest.raises(IllegalTransition):
        store.request_cancel(done.id)


def test_requeue_once_then_fail(store: JobStore) -> None:
    job = store.create(req(), backend="local", max_attempts=2)[0]
    store.claim("w1", "local")
    store.transition(job.id, JobStatus.RUNNING)
    again = store.requeue_or_fail(job.id, code="worker_lost", message="gone")
    assert again.status is JobStatus.QUEUED and again.attempt == 1 and "attempt 1 lost" in again.warnings[0]
    assert store.claim("w2", "local").attempt == 2
    final = store.requeue_or_fail(job.id, code="worker_lost", message="gone again")
    assert final.status is JobStatus.FAILED and final.error_code == "worker_lost"


def test_refunded_requeue_keeps_attempts(store: JobStore) -> None:
    job = store.create(req(), backend="local", max_attempts=1)[0]
    store.claim("w1", "local")
    again = store.requeue_or_fail(job.id, code="worker_stopped", message="shutdown", refund=True)
    assert again.status is JobStatus.QUEUED and again.attempt == 0


def test_concurrent_updates_lose_nothing(store: JobStore) -> None:
    job = store.create(req(), backend="local")[0]
    store.claim("w", "local")
    store.transition(job.id, JobStatus.RUNNING)

    def warn(i: int) -> None:
        store.record_progress(job.id, stage="panorama", progress=0.5, message=None, warnings=[f"w{i}"])

    threads = [threading.Thread(target=warn, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(store.get(job.id).warnings) == sorted(f"w{i}" for i in range(10))


def test_changed_since_counts_and_tombstones(store: JobStore) -> None:
    before = utcnow()
    job = store.create(req(), backend="local")[0]
    assert [j.id for j in store.changed_since(before)] == [job.id]
    assert store.counts_by_status()["queued"] == 1
    deleted = store.mark_deleted(job.id)
    assert deleted.deleted and store.get(job.id).deleted
    assert store.counts_by_status()["queued"] == 0


def test_migrations_match_the_tables(store: JobStore) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from worldgen.jobs.tables import Base

    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    JobStore.open(str(store.engine.url.render_as_string(hide_password=False))).close()  # re-running is a no-op
