"""/v1/worlds/{id}/webhooks: a world's webhook deliveries, and sending one again."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from worldgen.api.auth import Caller, current_caller
from worldgen.api.errors import ApiError
from worldgen.api.routes.worlds import live_job
from worldgen.api.state import AppState, app_state
from worldgen.jobs import webhooks
from worldgen.jobs.store import utcnow

router = APIRouter(prefix="/v1/worlds", tags=["webhooks"])


class DeliveryOut(BaseModel):
    id: str
    event_type: str
    url: str
    status: str
    """pending | delivered | failed (given up after WORLDGEN_WEBHOOK_RETRY_HOURS)."""
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None

    @classmethod
    def of(cls, delivery: webhooks.Delivery) -> DeliveryOut:
        pending = delivery.status == webhooks.PENDING
        return cls(
            id=delivery.id, event_type=delivery.event_type, url=delivery.url, status=delivery.status,
            attempts=delivery.attempts, last_status_code=delivery.last_status_code, last_error=delivery.last_error,
            created_at=delivery.created_at, delivered_at=delivery.delivered_at,
            next_attempt_at=delivery.next_attempt_at if pending else None,
        )  # fmt: skip


class DeliveryList(BaseModel):
    world_id: str
    items: list[DeliveryOut]


@router.get("/{world_id}/webhooks", response_model=DeliveryList)
def list_deliveries(
    world_id: str, state: AppState = Depends(app_state), caller: Caller = Depends(current_caller)
) -> DeliveryList:
    live_job(state, world_id, caller)
    return DeliveryList(
        world_id=world_id, items=[DeliveryOut.of(d) for d in webhooks.deliveries(state.store, world_id)]
    )


@router.post("/{world_id}/webhooks/{delivery_id}/redeliver", status_code=202, response_model=DeliveryOut)
def redeliver(
    world_id: str, delivery_id: str, state: AppState = Depends(app_state), caller: Caller = Depends(current_caller)
) -> DeliveryOut:
    live_job(state, world_id, caller)
    delivery = webhooks.redeliver(state.store, world_id, delivery_id, utcnow())
    if delivery is None:
        raise ApiError(404, "not_found", f"world {world_id} has no webhook delivery {delivery_id!r}")
    return DeliveryOut.of(delivery)
