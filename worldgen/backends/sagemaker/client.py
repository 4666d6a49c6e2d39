"""A thin wrapper over boto3's SageMaker client: create (idempotent per name), describe, list and
stop, every failure raised as a classified `AwsError` (see `errors`). botocore's own retries are
off: the dispatcher decides when to try again, so a throttled call costs one request, not four."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from worldgen.backends.sagemaker.errors import AwsError, Kind, classify


@dataclass(frozen=True)
class ProcessingStatus:
    name: str
    status: str  # InProgress | Completed | Failed | Stopping | Stopped
    failure_reason: str | None = None
    exit_message: str | None = None


def sagemaker_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("sagemaker", config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def _missing(error: AwsError) -> bool:
    text = error.message.lower()
    return error.code in ("ValidationException", "ResourceNotFound") and any(
        m in text for m in ("not found", "could not find", "does not exist")
    )


class SageMakerClient:
    def __init__(self, client: Any = None) -> None:
        self.client = client or sagemaker_client()

    def create(self, request: dict[str, Any]) -> str:
        """Create the job; an existing job of the same name (an earlier try that timed out) counts
        as created. Returns the job's name."""
        try:
            self.client.create_processing_job(**request)
        except Exception as exc:
            error = classify(exc, uncertain_on_timeout=True)
            if error.code == "ResourceInUse" or "already exists" in error.message:
                return str(request["ProcessingJobName"])
            raise error from exc
        return str(request["ProcessingJobName"])

    def describe(self, name: str) -> ProcessingStatus | None:
        """The job's status; None if SageMaker has no job of that name."""
        try:
            response = self.client.describe_processing_job(ProcessingJobName=name)
        except Exception as exc:
            error = classify(exc)
            if _missing(error):
                return None
            raise error from exc
        return ProcessingStatus(
            name=name,
            status=response["ProcessingJobStatus"],
            failure_reason=response.get("FailureReason"),
            exit_message=response.get("ExitMessage"),
        )

    def list_statuses(self, created_after: datetime) -> dict[str, str]:
        """name → status of our jobs created after `created_after` (one paginated listing)."""
        statuses: dict[str, str] = {}
        try:
            paginator = self.client.get_paginator("list_processing_jobs")
            for page in paginator.paginate(NameContains="wg-", CreationTimeAfter=created_after, MaxResults=100):
                for summary in page.get("ProcessingJobSummaries", []):
                    statuses[summary["ProcessingJobName"]] = summary["ProcessingJobStatus"]
        except Exception as exc:
            raise classify(exc) from exc
        return statuses

    def stop(self, name: str) -> None:
        """Stop the job; one that has finished, is stopping already or does not exist needs nothing."""
        try:
            self.client.stop_processing_job(ProcessingJobName=name)
        except Exception as exc:
            error = classify(exc)
            text = error.message.lower()
            done = error.code == "ValidationException" and any(
                m in text for m in ("already", "status", "not found", "does not exist", "could not find")
            )
            if done:
                return
            raise error from exc


__all__ = ["AwsError", "Kind", "ProcessingStatus", "SageMakerClient", "sagemaker_client"]
