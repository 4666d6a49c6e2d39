"""Server-Sent Events: one job until it ends, or every job change (one stream for list views)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from worldgen.api.auth import Caller, current_caller
from worldgen.api.routes.worlds import live_job
from worldgen.api.schemas import JobOut
from worldgen.api.state import AppState, app_state
from worldgen.jobs.store import Job, utcnow

router = APIRouter(tags=["events"])

POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15.0
# Rows may commit slightly out of updated_at order; look back this far and dedupe by version.
LOOKBACK = timedelta(seconds=5)


def _event(job: Job, first: bool) -> str:
    """A job event: the world as JobOut; without its `request` (which never changes) unless this
    is the first event the stream sends for that world."""
    data = JobOut.of(job).model_dump_json(exclude=None if first else {"request"})
    return f"id: {job.id}:{job.version}\nevent: job\ndata: {data}\n\n"


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


def _stream(generator: AsyncIterator[str]) -> EventStream:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return EventStream(generator, headers=headers)


def _events(description: str, kinds: list[str]) -> dict[int | str, dict[str, Any]]:
    """One event of the stream (OpenAPI 3.1: a text/event-stream `schema` describes each event)."""
    event = {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": kinds},
            "id": {"type": "string", "description": "`<world id>:<version>` (job events)"},
            "data": {"type": "string", "contentMediaType": "application/json",
                     "description": "job events: the world (JobOut) as JSON, without `request` after the first "
                                    "event a stream sends for that world (the request never changes: merge by "
                                    "`id`); others: `{}`"},
        },
    }  # fmt: skip
    return {200: {"description": description, "content": {"text/event-stream": {"schema": event}}}}


@router.get(
    "/v1/worlds/{world_id}/events",
    response_class=EventStream,
    responses=_events("Server-Sent Events: `event: job` (`id: <world>:<version>`, `data`: the world as JobOut; "
                      "`request` in the first only) at every change, then `event: end` once it has ended or was "
                      "deleted", ["job", "end"]),
)  # fmt: skip
def world_events(
    world_id: str, request: Request, state: AppState = Depends(app_state), caller: Caller = Depends(current_caller)
) -> EventStream:
    first = live_job(state, world_id, caller)

    async def generate() -> AsyncIterator[str]:
        job, sent_version, last_sent = first, 0, time.monotonic()
        while True:
            if job.version != sent_version:
                yield _event(job, first=sent_version == 0)
                sent_version, last_sent = job.version, time.monotonic()
            if job.status.terminal or job.deleted:
                yield "event: end\ndata: {}\n\n"
                return
            if await request.is_disconnected():
                return
            if time.monotonic() - last_sent > KEEPALIVE_SECONDS:
                yield ": keepalive\n\n"
                last_sent = time.monotonic()
            await asyncio.sleep(POLL_SECONDS)
            job = await anyio.to_thread.run_sync(state.store.get, world_id)

    return _stream(generate())


@router.get(
    "/v1/events",
    response_class=EventStream,
    responses=_events("Server-Sent Events: `event: ready`, then `event: job` (`data`: the world as JobOut; "
                      "`request` in a world's first event only) whenever one of the caller's worlds changes; never "
                      "ends", ["ready", "job"]),
)  # fmt: skip
def all_events(
    request: Request, state: AppState = Depends(app_state), caller: Caller = Depends(current_caller)
) -> EventStream:
    async def generate() -> AsyncIterator[str]:
        since = utcnow()
        seen: dict[str, int] = {}
        last_sent = time.monotonic()
        yield "event: ready\ndata: {}\n\n"
        while not await request.is_disconnected():
            changed = await anyio.to_thread.run_sync(state.store.changed_since, since - LOOKBACK)
            for job in changed:
                if not caller.owns(job):
                    continue
                if seen.get(job.id, 0) < job.version:
                    yield _event(job, first=job.id not in seen)
                    seen[job.id] = job.version
                    last_sent = time.monotonic()
            if changed:
                since = max(since, max(j.updated_at for j in changed))
            if time.monotonic() - last_sent > KEEPALIVE_SECONDS:
                yield ": keepalive\n\n"
                last_sent = time.monotonic()
            await asyncio.sleep(POLL_SECONDS)

    return _stream(generate())
