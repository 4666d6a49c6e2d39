"""Server-Sent Events: one job until it ends, or every job change (one stream for list views)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta

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


def _event(job: Job) -> str:
    data = JobOut.of(job).model_dump_json()
    return f"id: {job.id}:{job.version}\nevent: job\ndata: {data}\n\n"


def _stream(generator: AsyncIterator[str]) -> StreamingResponse:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(generator, media_type="text/event-stream", headers=headers)


@router.get("/v1/worlds/{world_id}/events")
def world_events(
    world_id: str, request: Request, state: AppState = Depends(app_state), caller: Caller = Depends(current_caller)
) -> StreamingResponse:
    first = live_job(state, world_id, caller)

    async def generate() -> AsyncIterator[str]:
        job, sent_version, last_sent = first, 0, time.monotonic()
        while True:
            if job.version != sent_version:
                yield _event(job)
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


@router.get("/v1/events")
def all_events(
    request: Request, state: AppState = Depends(app_state), caller: Caller = Depends(current_caller)
) -> StreamingResponse:
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
                    seen[job.id] = job.version
                    yield _event(job)
                    last_sent = time.monotonic()
            if changed:
                since = max(since, max(j.updated_at for j in changed))
            if time.monotonic() - last_sent > KEEPALIVE_SECONDS:
                yield ": keepalive\n\n"
                last_sent = time.monotonic()
            await asyncio.sleep(POLL_SECONDS)

    return _stream(generate())


def encode(data: object) -> str:
    return json.dumps(data)
