"""The job state machine: every status change in the system goes through `check_transition`.

queued → starting → running → succeeded | failed | canceled
starting/running → canceling → canceled | failed   (cancel requested while work is under way)
starting/running → queued                          (retry: worker lost, quota, throttling)
queued → canceled | failed                         (cancelled or rejected before it started)
"""

from __future__ import annotations

from enum import StrEnum

from worldgen.progress import Stage

__all__ = ["TERMINAL", "TRANSITIONS", "IllegalTransition", "JobStatus", "Stage", "check_transition"]


class JobStatus(StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    CANCELING = "canceling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def active(self) -> bool:
        """Work may be happening on a worker or in SageMaker."""
        return self in (JobStatus.STARTING, JobStatus.RUNNING, JobStatus.CANCELING)


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.STARTING, JobStatus.CANCELED, JobStatus.FAILED}),
    JobStatus.STARTING: frozenset({JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.CANCELING, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELING, JobStatus.QUEUED}),
    JobStatus.CANCELING: frozenset({JobStatus.CANCELED, JobStatus.FAILED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELED: frozenset(),
}


class IllegalTransition(Exception):
    """A status change that the state machine does not allow."""

    def __init__(self, job_id: str, current: JobStatus, target: JobStatus) -> None:
        super().__init__(f"job {job_id}: cannot go from {current.value} to {target.value}")
        self.job_id, self.current, self.target = job_id, current, target


def check_transition(job_id: str, current: JobStatus | str, target: JobStatus | str) -> None:
    current, target = JobStatus(current), JobStatus(target)
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(job_id, current, target)
