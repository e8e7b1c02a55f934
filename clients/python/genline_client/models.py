"""Typed views of genline's JSON (DESIGN §2, §4): jobs, their parts, events and pages.

Each model is built with ``from_dict``, which tolerates fields it does not know
(a newer server) and keeps the whole object in ``raw``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

TERMINAL_STATUSES = ("completed", "failed", "canceled")
TERMINAL_EVENTS = TERMINAL_STATUSES


def _pick(cls, data: Optional[dict]):
    """An instance of the dataclass ``cls`` from the keys of ``data`` it declares."""
    if data is None:
        return None
    names = {f.name for f in fields(cls)} - {"raw"}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Budget:
    """The job's server-side budget: per-attempt timeout, whole-job deadline, attempts."""

    timeout_s: Optional[float] = None
    deadline_s: Optional[float] = None
    max_attempts: Optional[int] = None

    def to_dict(self) -> dict:
        return {k: v for k, v in (("timeout_s", self.timeout_s), ("deadline_s", self.deadline_s),
                                  ("max_attempts", self.max_attempts)) if v is not None}


@dataclass
class JobError:
    code: str
    message: Optional[str] = None
    retryable: Optional[bool] = None
    step: Optional[str] = None


@dataclass
class Output:
    url: str
    media_type: Optional[str] = None
    bytes: Optional[int] = None
    width: Optional[int] = None
    height: Optional[int] = None
    sha256: Optional[str] = None
    provider: Optional[str] = None
    model: Optional[str] = None


@dataclass
class Timing:
    queued_s: Optional[float] = None
    generate_s: Optional[float] = None
    upload_s: Optional[float] = None
    total_s: Optional[float] = None


@dataclass
class Urls:
    """``self`` and ``events`` carry a job-scoped read token: hand them to a browser, never the key."""

    self: Optional[str] = None
    events: Optional[str] = None
    cancel: Optional[str] = None


@dataclass
class Job:
    id: str
    status: str
    operation: Optional[str] = None
    provider: Optional[str] = None
    model: Optional[str] = None
    prompt: Optional[str] = None
    prompt_sha256: Optional[str] = None
    params: dict[str, Any] = field(default_factory=dict)
    inputs: Optional[dict] = None
    budget: Budget = field(default_factory=Budget)
    priority: Optional[str] = None
    step: Optional[str] = None
    attempt: Optional[int] = None
    progress: Optional[float] = None
    queue_position: Optional[int] = None
    error: Optional[JobError] = None
    outputs: list[Output] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    webhook: Optional[dict] = None
    created_at: Optional[str] = None
    started_at: Optional[str] = None
    completed_at: Optional[str] = None
    deadline_at: Optional[str] = None
    estimated_start_at: Optional[str] = None
    estimated_finish_at: Optional[str] = None
    timing: Timing = field(default_factory=Timing)
    urls: Urls = field(default_factory=Urls)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def terminal(self) -> bool:
        """True once the job is completed, failed or canceled."""
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_dict(cls, data: dict) -> Job:
        simple = {f.name for f in fields(cls)} - {"budget", "error", "outputs", "timing", "urls", "raw"}
        job = cls(**{k: v for k, v in data.items() if k in simple})
        job.budget = _pick(Budget, data.get("budget")) or Budget()
        job.error = _pick(JobError, data.get("error"))
        job.outputs = [_pick(Output, o) for o in data.get("outputs") or []]
        job.timing = _pick(Timing, data.get("timing")) or Timing()
        job.urls = _pick(Urls, data.get("urls")) or Urls()
        job.params = job.params or {}
        job.metadata = job.metadata or {}
        job.raw = data
        return job


@dataclass
class Event:
    """One event of a job's log: ``id`` is its sequence number (the SSE id, for ``Last-Event-ID``)."""

    id: int
    type: str
    job_id: Optional[str] = None
    data: dict[str, Any] = field(default_factory=dict)
    created_at: Optional[str] = None

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS

    @property
    def fraction(self) -> Optional[float]:
        """The progress fraction (0..1) of a ``progress`` event, else None."""
        return self.data.get("fraction") if self.type == "progress" else None

    @classmethod
    def from_dict(cls, data: dict) -> Event:
        return cls(id=int(data["id"]), type=data["type"], job_id=data.get("job_id"),
                   data=data.get("data") or {}, created_at=data.get("created_at"))


@dataclass
class Upload:
    """An uploaded input image: pass ``id`` in ``images=`` or ``mask=`` of an edit or inpaint job."""

    id: str
    media_type: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    bytes: Optional[int] = None

    @classmethod
    def from_dict(cls, data: dict) -> Upload:
        return _pick(cls, data)


@dataclass
class Page:
    """One page of ``jobs.list``; ``next_cursor`` is None on the last page."""

    data: list[Job]
    next_cursor: Optional[str] = None


@dataclass
class CancelResult:
    """What ``jobs.cancel_many`` canceled."""

    canceled: int
    data: list[Job]


@dataclass
class WebhookMessage:
    """A verified webhook: ``type`` is ``job.<event>``; ``event`` and ``job`` as at sending."""

    id: str
    type: str
    timestamp: Optional[str]
    event: Optional[Event]
    job: Optional[Job]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, msg_id: str, data: dict) -> WebhookMessage:
        inner = data.get("data") or {}
        event = Event.from_dict(inner["event"]) if inner.get("event") else None
        job = Job.from_dict(inner["job"]) if inner.get("job") else None
        return cls(id=msg_id, type=data.get("type", ""), timestamp=data.get("timestamp"),
                   event=event, job=job, raw=data)
