"""A thin wrapper over boto3's SageMaker client: create (idempotent per name), describe, list, stop,
and the error classes the dispatcher acts on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError, ConnectionError, EndpointConnectionError, ReadTimeoutError

QUOTA_CODES = {"ResourceLimitExceeded", "ThrottlingException", "Throttling", "TooManyRequestsException"}
TRANSIENT = (ReadTimeoutError, EndpointConnectionError, ConnectionError)


class QuotaExceeded(Exception):
    """SageMaker refused for capacity or rate: the job waits in the queue and is tried again."""


class SubmissionUncertain(Exception):
    """The request may or may not have reached SageMaker (timeout): find out before trying again."""


@dataclass(frozen=True)
class ProcessingStatus:
    name: str
    status: str  # InProgress | Completed | Failed | Stopping | Stopped
    failure_reason: str | None = None
    exit_message: str | None = None
    modified: datetime | None = None
    started: datetime | None = None
    ended: datetime | None = None


def sagemaker_client():  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config

    return boto3.client("sagemaker", config=Config(retries={"max_attempts": 3, "mode": "standard"}))


class SageMakerClient:
    def __init__(self, client=None) -> None:  # type: ignore[no-untyped-def]
        self.client = client or sagemaker_client()

    def create(self, request: dict[str, Any]) -> str:
        """Create the job; an existing job of the same name (an earlier try that timed out) counts
        as created. Returns the job's name."""
        try:
            self.client.create_processing_job(**request)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", "")
            if code in QUOTA_CODES:
                raise QuotaExceeded(f"{code}: {message}") from exc
            if "already exists" in message or code == "ResourceInUse":
                return request["ProcessingJobName"]
            raise
        except TRANSIENT as exc:
            raise SubmissionUncertain(str(exc)) from exc
        return request["ProcessingJobName"]

    def describe(self, name: str) -> ProcessingStatus | None:
        try:
            response = self.client.describe_processing_job(ProcessingJobName=name)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            message = error.get("Message", "").lower()
            missing = ("not found", "could not find", "does not exist")
            if error.get("Code") in ("ValidationException", "ResourceNotFound") and any(m in message for m in missing):
                return None
            if error.get("Code") in QUOTA_CODES:
                raise QuotaExceeded(error.get("Message", "")) from exc
            raise
        return ProcessingStatus(
            name=name,
            status=response["ProcessingJobStatus"],
            failure_reason=response.get("FailureReason"),
            exit_message=response.get("ExitMessage"),
            modified=response.get("LastModifiedTime"),
            started=response.get("ProcessingStartTime"),
            ended=response.get("ProcessingEndTime"),
        )

    def list_statuses(self, created_after: datetime) -> dict[str, str]:
        """name → status of our jobs created after `created_after` (one paginated listing)."""
        statuses: dict[str, str] = {}
        paginator = self.client.get_paginator("list_processing_jobs")
        for page in paginator.paginate(NameContains="wg-", CreationTimeAfter=created_after, MaxResults=100):
            for summary in page.get("ProcessingJobSummaries", []):
                statuses[summary["ProcessingJobName"]] = summary["ProcessingJobStatus"]
        return statuses

    def stop(self, name: str) -> None:
        try:
            self.client.stop_processing_job(ProcessingJobName=name)
        except ClientError as exc:
            message = exc.response.get("Error", {}).get("Message", "")
            if "already" in message.lower() or "not found" in message.lower() or "Status" in message:
                return  # finished or stopping already: nothing to stop
            raise
