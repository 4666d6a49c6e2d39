"""One taxonomy for every error an AWS call can raise, and what the service does about each.

- retryable: throttling, capacity, 5xx, connection trouble → try again later, with bounded
  exponential backoff and jitter; a world waits at most `WORLDGEN_SAGEMAKER_MAX_QUEUE_SECONDS`.
- quota: ResourceLimitExceeded → the world waits (its message carries the limit's text) until
  the same deadline, then fails with `quota_exceeded`; a limit of 0 can never be met → fails at once.
- permanent: validation, access denied, unknown resources, anything unrecognised → the world fails
  at once with `sagemaker_rejected` and AWS's code and message.
- uncertain: a CreateProcessingJob whose request may have reached SageMaker (timeout) → find out
  with DescribeProcessingJob before anything is sent again (names are idempotent per attempt).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectionError,
    EndpointConnectionError,
    ReadTimeoutError,
)


class Kind(StrEnum):
    RETRYABLE = "retryable"
    QUOTA = "quota"
    PERMANENT = "permanent"
    UNCERTAIN = "uncertain"


THROTTLING = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "ProvisionedThroughputExceededException",
    }
)
CAPACITY = frozenset(
    {"InsufficientCapacity", "InsufficientCapacityError", "CapacityError", "InsufficientInstanceCapacity"}
)
SERVER = frozenset(
    {"InternalFailure", "InternalServerError", "InternalError", "ServiceUnavailable", "ServiceUnavailableException"}
)
QUOTA = frozenset({"ResourceLimitExceeded"})
_ZERO_LIMIT = re.compile(r"\bis 0(\.0+)? ?(instances?|gb|jobs?)?\b", re.IGNORECASE)
_CAPACITY_REASON = re.compile(r"capacity", re.IGNORECASE)

BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(minutes=10)


@dataclass(frozen=True)
class AwsError(Exception):
    """An AWS call's failure, classified."""

    kind: Kind
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code

    @property
    def zero_limit(self) -> bool:
        """A quota whose limit is 0 (e.g. "... is 0 Instances"): waiting never helps."""
        return self.kind is Kind.QUOTA and bool(_ZERO_LIMIT.search(self.message))


def classify(exc: BaseException, *, uncertain_on_timeout: bool = False) -> AwsError:
    """The taxonomy for one exception raised by a botocore call."""
    if isinstance(exc, AwsError):
        return exc
    if isinstance(exc, ReadTimeoutError | ConnectionClosedError) and uncertain_on_timeout:
        return AwsError(Kind.UNCERTAIN, type(exc).__name__, str(exc))
    if isinstance(exc, ReadTimeoutError | EndpointConnectionError | ConnectionError | ConnectionClosedError):
        return AwsError(Kind.RETRYABLE, type(exc).__name__, str(exc))
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in QUOTA:
            return AwsError(Kind.QUOTA, code, message)
        if code in THROTTLING or code in CAPACITY or code in SERVER or status >= 500 or status == 429:
            return AwsError(Kind.RETRYABLE, code, message)
        return AwsError(Kind.PERMANENT, code, message)
    return AwsError(Kind.PERMANENT, type(exc).__name__, str(exc))


def is_capacity_failure(failure_reason: str | None) -> bool:
    """A processing job that failed because AWS had no instance for it (retry, says AWS)."""
    return bool(failure_reason) and bool(_CAPACITY_REASON.search(failure_reason or ""))


def backoff(waited: timedelta, *, rng: random.Random | None = None) -> timedelta:
    """Delay before the next try of a world that has waited `waited` so far: about as long again
    (so the waits grow exponentially: 30 s, 1 min, 2 min, ...), at least 30 s, at most 10 min,
    with jitter (between half and all of it) so that many waiting worlds do not retry in step."""
    ceiling = min(max(waited, BACKOFF_BASE), BACKOFF_MAX)
    return ceiling * (0.5 + 0.5 * (rng or random).random())
