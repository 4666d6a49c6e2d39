"""The state machine: exactly the documented edges are legal."""

from __future__ import annotations

import itertools

import pytest

from worldgen.jobs.state import IllegalTransition, JobStatus, check_transition

S = JobStatus
LEGAL = {
    (S.QUEUED, S.STARTING), (S.QUEUED, S.CANCELED), (S.QUEUED, S.FAILED),
    (S.STARTING, S.RUNNING), (S.STARTING, S.QUEUED), (S.STARTING, S.CANCELING), (S.STARTING, S.FAILED),
    (S.RUNNING, S.SUCCEEDED), (S.RUNNING, S.FAILED), (S.RUNNING, S.CANCELING), (S.RUNNING, S.QUEUED),
    (S.CANCELING, S.CANCELED), (S.CANCELING, S.FAILED),
}  # fmt: skip


@pytest.mark.parametrize(("current", "target"), list(itertools.product(JobStatus, JobStatus)))
def test_every_pair(current: JobStatus, target: JobStatus) -> None:
    if (current, target) in LEGAL:
        check_transition("j", current, target)
    else:
        with pytest.raises(IllegalTransition, match=f"from {current.value} to {target.value}"):
            check_transition("j", current, target)


def test_terminal_states() -> None:
    assert {s for s in JobStatus if s.terminal} == {S.SUCCEEDED, S.FAILED, S.CANCELED}
    assert {s for s in JobStatus if s.active} == {S.STARTING, S.RUNNING, S.CANCELING}
