"""POST /v1/integrations/sagemaker/events: EventBridge "SageMaker Processing Job State Change"
events, as a second, push-based path for job status besides the poller."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Body, Depends, Header

from worldgen.api.errors import ApiError
from worldgen.api.state import AppState, app_state
from worldgen.backends.sagemaker.sync import apply_status
from worldgen.storage.s3 import S3ArtifactStore

router = APIRouter(prefix="/v1/integrations", tags=["integrations"])

DETAIL_TYPE = "SageMaker Processing Job State Change"
SECRET_HEADER = "X-Worldgen-Events-Secret"


@router.post("/sagemaker/events", status_code=202)
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
    if event.get("detail-type") != DETAIL_TYPE:
        raise ApiError(422, "invalid_request", f"expected detail-type {DETAIL_TYPE!r}")
    detail = event.get("detail")
    if not isinstance(detail, dict) or not detail.get("ProcessingJobName") or not detail.get("ProcessingJobStatus"):
        raise ApiError(422, "invalid_request", "detail must carry ProcessingJobName and ProcessingJobStatus")
    job = state.store.find_by_backend_ref("sagemaker", str(detail["ProcessingJobName"]))
    if job is None:
        return {"applied": False, "reason": "no worldgen job for this processing job"}
    if not isinstance(state.storage, S3ArtifactStore):
        raise ApiError(409, "conflict", "SageMaker events need S3 artifact storage")
    before = job.version
    job = apply_status(
        state.store,
        state.storage,
        job,
        str(detail["ProcessingJobStatus"]),
        failure_reason=detail.get("FailureReason"),
        exit_message=detail.get("ExitMessage"),
    )
    return {"applied": job.version != before, "job": job.id, "status": job.status.value}
