"""POST /v1/integrations/sagemaker/events: EventBridge "SageMaker Processing Job State Change"
events, as a second, push-based path for job status besides the poller.

An event is a hint, not a fact: its status is checked with DescribeProcessingJob and only what
SageMaker says is applied, so a forged or stale event (even with the shared secret) changes
nothing. An event that cannot be verified changes nothing either; the poller catches up."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Body, Depends, Header

from worldgen.api.errors import ApiError
from worldgen.api.state import AppState, app_state
from worldgen.backends.sagemaker.client import SageMakerClient
from worldgen.backends.sagemaker.errors import AwsError
from worldgen.backends.sagemaker.sync import apply_status
from worldgen.storage.s3 import S3ArtifactStore

router = APIRouter(prefix="/v1/integrations", tags=["integrations"])

SOURCE = "aws.sagemaker"
DETAIL_TYPE = "SageMaker Processing Job State Change"
SECRET_HEADER = "X-Worldgen-Events-Secret"


def sagemaker(state: AppState) -> SageMakerClient:
    """One client per app, made on first use (only deployments with the events endpoint need it)."""
    if state.sagemaker is None:
        state.sagemaker = SageMakerClient()
    return state.sagemaker


@router.post("/sagemaker/events", status_code=202, include_in_schema=False)  # internal: EventBridge only
def sagemaker_event(
    event: dict[str, Any] = Body(...),
    secret: str | None = Header(None, alias=SECRET_HEADER),
    state: AppState = Depends(app_state),
) -> dict[str, Any]:
    expected = state.settings.sagemaker_events_secret
    if not expected:
        raise ApiError(404, "not_found", "the SageMaker events endpoint is not configured")
    if secret is None or not hmac.compare_digest(secret.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", f"missing or wrong {SECRET_HEADER} header")
    if event.get("source") != SOURCE or event.get("detail-type") != DETAIL_TYPE:
        raise ApiError(422, "invalid_request", f"expected source {SOURCE!r} and detail-type {DETAIL_TYPE!r}")
    detail = event.get("detail")
    if not isinstance(detail, dict) or not detail.get("ProcessingJobName"):
        raise ApiError(422, "invalid_request", "detail must carry ProcessingJobName")
    name = str(detail["ProcessingJobName"])
    jobs = state.store.find_by_backend_ref("sagemaker", name)
    if not jobs:
        return {"applied": False, "reason": "no worldgen job for this processing job"}
    if not isinstance(state.storage, S3ArtifactStore):
        raise ApiError(409, "conflict", "SageMaker events need S3 artifact storage")
    client = sagemaker(state)
    try:
        described = client.describe(name)
    except AwsError as error:
        return {"applied": False, "job": jobs[0].id, "reason": f"could not verify the event: {error}"}
    if described is None:
        return {"applied": False, "job": jobs[0].id, "reason": "SageMaker has no such processing job"}
    applied, results = False, []
    for job in jobs:  # every world of the batch
        before = job.version
        job = apply_status(
            state.store,
            state.storage,
            job,
            described.status,
            failure_reason=described.failure_reason,
            exit_message=described.exit_message,
            max_queue_seconds=state.settings.sagemaker_max_queue_seconds,
        )
        applied = applied or job.version != before
        results.append(job)
    if described.status == "InProgress" and all(j.status.terminal for j in results):
        client.stop(name)  # a batch whose worlds all failed must not leave its processing job running (and billing)
    first = results[0]
    return {"applied": applied, "job": first.id, "status": first.status.value,
            "worlds": {j.id: j.status.value for j in results}}  # fmt: skip
