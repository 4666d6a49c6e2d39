"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Depends, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily

from worldgen.api.errors import ApiError
from worldgen.api.openapi import error_responses
from worldgen.api.state import AppState, app_state
from worldgen.jobs.store import JobStore

router = APIRouter(tags=["system"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses=error_responses((503, "`not_ready`: the job store is unreachable")))
def readyz(state: AppState = Depends(app_state)) -> dict[str, str]:
    try:
        state.store.ping()
    except Exception as exc:
        raise ApiError(503, "not_ready", f"job store unreachable: {type(exc).__name__}") from None
    return {"status": "ready"}


class StoreCollector:
    """Reads the store at scrape time: jobs by status and stage durations of finished jobs."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("worldgen_jobs", "Jobs by status (deleted excluded)", labels=["status"])
        for status, count in self.store.counts_by_status().items():
            jobs.add_metric([status], count)
        yield jobs
        durations = SummaryMetricFamily(
            "worldgen_stage_duration_seconds", "Stage durations of recent succeeded jobs", labels=["stage"]
        )
        totals: dict[str, tuple[int, float]] = {}
        for timings in self.store.finished_timings():
            for stage, seconds in timings.items():
                count, total = totals.get(stage, (0, 0.0))
                totals[stage] = (count + 1, total + float(seconds))
        for stage, (count, total) in sorted(totals.items()):
            durations.add_metric([stage], count_value=count, sum_value=total)
        yield durations


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"description": "Prometheus text exposition format 0.0.4",
                     "content": {"text/plain": {"schema": {"type": "string"}}}}},
)  # fmt: skip
def metrics(state: AppState = Depends(app_state)) -> Response:
    registry = CollectorRegistry()
    registry.register(StoreCollector(state.store))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")
