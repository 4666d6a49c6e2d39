"""Webhook deliveries kept in the job store: one row per world status change (and one when the
world is made), written in the same transaction as the change, so a restart loses none. The API
process sends them (api/webhooks.py) and records each attempt here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from worldgen.jobs.ids import new_id
from worldgen.jobs.tables import WebhookDeliveryRow

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class Delivery:
    id: str
    job_id: str
    url: str
    event_type: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None

    @classmethod
    def from_row(cls, row: WebhookDeliveryRow) -> Delivery:
        return cls(**{f.name: getattr(row, f.name) for f in dataclasses.fields(cls)})


def snapshot(job: Any) -> dict[str, Any]:
    """The Job as JSON (datetimes as ISO strings, the status as its value)."""
    values = dataclasses.asdict(job)
    values["status"] = job.status.value
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}


def enqueue(session: Session, job: Any, now: datetime) -> None:
    """A delivery of the job's current state, if its request asks for webhooks."""
    url = (job.request or {}).get("webhook_url")
    if not url:
        return
    session.add(
        WebhookDeliveryRow(
            id=new_id(),
            job_id=job.id,
            url=url,
            event_type=f"world.{job.status.value}",
            payload=snapshot(job),
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            delivered_at=None,
            last_status_code=None,
            last_error=None,
        )
    )


def deliveries(store: Any, job_id: str) -> list[Delivery]:
    query = (
        select(WebhookDeliveryRow)
        .where(WebhookDeliveryRow.job_id == job_id)
        .order_by(WebhookDeliveryRow.created_at, WebhookDeliveryRow.id)
    )
    with store._session() as session:
        return [Delivery.from_row(r) for r in session.scalars(query)]


def claim_due(store: Any, now: datetime, lease: timedelta, limit: int = 20) -> list[Delivery]:
    """Pending deliveries that are due, leased for `lease` (another sender skips them meanwhile)."""
    query = (
        select(WebhookDeliveryRow)
        .where(WebhookDeliveryRow.status == PENDING, WebhookDeliveryRow.next_attempt_at <= now)
        .order_by(WebhookDeliveryRow.next_attempt_at)
        .limit(limit)
    )
    claimed = []
    with store._session() as session:
        for row in session.scalars(query):
            taken = session.execute(
                update(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.id == row.id, WebhookDeliveryRow.next_attempt_at == row.next_attempt_at)
                .values(next_attempt_at=now + lease)
                .execution_options(synchronize_session=False)
            )
            if getattr(taken, "rowcount", 0) == 1:
                claimed.append(Delivery.from_row(row))
    return claimed


def record_attempt(
    store: Any, delivery_id: str, *, now: datetime, ok: bool, status_code: int | None, error: str | None,
    retry_at: datetime | None,
) -> None:  # fmt: skip
    """One attempt's outcome: delivered, another try at `retry_at`, or (None) given up."""
    values: dict[str, Any] = {"last_status_code": status_code, "last_error": error}
    if ok:
        values.update(status=DELIVERED, delivered_at=now)
    elif retry_at is None:
        values.update(status=FAILED)
    else:
        values.update(next_attempt_at=retry_at)
    with store._session() as session:
        row = session.get(WebhookDeliveryRow, delivery_id)
        if row is None:
            return
        values["attempts"] = row.attempts + 1
        for key, value in values.items():
            setattr(row, key, value)


def redeliver(store: Any, job_id: str, delivery_id: str, now: datetime) -> Delivery | None:
    """Send a delivery again now (whatever its state); None if the world has no such delivery."""
    with store._session() as session:
        row = session.get(WebhookDeliveryRow, delivery_id)
        if row is None or row.job_id != job_id:
            return None
        row.status, row.next_attempt_at = PENDING, now
        return Delivery.from_row(row)
