"""The job lifecycle: statuses, steps and the legal transitions. No I/O here.

Everything that moves a job goes through ``pipeline.store.jobs.transition``, which
turns ``sources(to)`` into a compare-and-set UPDATE.
"""
from __future__ import annotations

from enum import Enum
from typing import Literal, get_args


class JobStatus(str, Enum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    def __str__(self) -> str:
        return self.value


class Step(str, Enum):
    VALIDATE = "validate"
    GENERATE = "generate"
    UPLOAD = "upload"
    NOTIFY = "notify"

    def __str__(self) -> str:
        return self.value


STEPS = (Step.VALIDATE, Step.GENERATE, Step.UPLOAD, Step.NOTIFY)

TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})

# The same vocabulary as types for the API's schemas (pydantic needs literals).
Status = Literal["queued", "processing", "completed", "failed", "canceled"]
ActiveStatus = Literal["queued", "processing"]
"""What a cancel applies to."""
EndedStatus = Literal["failed", "canceled"]
"""What a retry or a replay applies to."""
EventType = Literal["queued", "started", "progress", "retry", "completed", "failed", "canceled"]
"""Every type of event a job's log holds."""

STATUSES: tuple[str, ...] = tuple(s.value for s in JobStatus)
TERMINAL_STATUSES: tuple[str, ...] = tuple(s.value for s in JobStatus if s in TERMINAL)
assert get_args(Status) == STATUSES
assert set(get_args(ActiveStatus)) == set(STATUSES) - set(TERMINAL_STATUSES)
assert set(get_args(EndedStatus)) == {JobStatus.FAILED.value, JobStatus.CANCELED.value}

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.CANCELED, JobStatus.FAILED}),
    JobStatus.PROCESSING: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED}),
    # Only an explicit retry moves a job out of failed or canceled.
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELED: frozenset({JobStatus.QUEUED}),
    JobStatus.COMPLETED: frozenset(),
}

# The event type a transition into each status appends.
EVENT_FOR = {
    JobStatus.QUEUED: "queued",
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELED: "canceled",
}

TERMINAL_EVENT_TYPES: tuple[str, ...] = tuple(EVENT_FOR[s] for s in JobStatus if s in TERMINAL)
"""The event types that end a job's log, in status order (completed, failed, canceled)."""
TERMINAL_EVENTS = frozenset(TERMINAL_EVENT_TYPES)
assert set(EVENT_FOR.values()) | {"started", "progress", "retry"} == set(get_args(EventType))


def can_transition(old: JobStatus | str, new: JobStatus | str) -> bool:
    """True when ``old -> new`` is a legal move."""
    return JobStatus(new) in TRANSITIONS[JobStatus(old)]


def sources(new: JobStatus | str) -> frozenset[JobStatus]:
    """Every status a job may be in to move to ``new``."""
    new = JobStatus(new)
    return frozenset(old for old, targets in TRANSITIONS.items() if new in targets)


def is_terminal(status: JobStatus | str) -> bool:
    return JobStatus(status) in TERMINAL


def next_step(step: Step | str) -> Step | None:
    """The step after ``step``, or None after the last."""
    index = STEPS.index(Step(step))
    return STEPS[index + 1] if index + 1 < len(STEPS) else None
