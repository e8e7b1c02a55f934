"""A job row as the store hands it out: a frozen snapshot, safe after the session is released."""
from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

from pipeline.store.models import Job


@dataclass(frozen=True)
class JobSnapshot:
    """A job row as read or written, safe to use after the session is released. Frozen:
    a caller's own view of a later state is ``dataclasses.replace(job, ...)``."""

    id: str
    tenant_id: str
    status: str
    step: str | None
    operation: str
    providers: list
    provider: str | None
    model: str | None
    prompt: str | None
    prompt_sha256: str
    params: dict
    inputs: dict | None
    priority: str
    timeout_s: float
    deadline_s: float
    max_attempts: int
    attempt: int
    lost_count: int
    progress: float | None
    error: dict | None
    outputs: list | None
    step_outputs: dict
    timing: dict
    job_metadata: dict
    webhook: dict | None
    idempotency_key: str | None
    request_sha256: str | None
    lease_owner: str | None
    lease_until: datetime | None
    held: str | None
    admit_at: datetime | None
    event_seq: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    deadline_at: datetime
    updated_at: datetime


FIELDS = tuple(f.name for f in fields(JobSnapshot))
COLUMN_KEY = {attr.key: attr.columns[0].key for attr in Job.__mapper__.column_attrs}
"""Mapped attribute name -> column name (``job_metadata`` is the column ``metadata``)."""
if set(COLUMN_KEY) != set(FIELDS):  # a column added to the model needs its field here
    raise RuntimeError(f"JobSnapshot fields differ from the jobs table: {set(COLUMN_KEY) ^ set(FIELDS)}")
ALL_COLUMNS = [Job.__table__.c[COLUMN_KEY[name]] for name in FIELDS]


def of_row(row) -> JobSnapshot:
    """A snapshot from a row of every column (a RETURNING saves reading the row again)."""
    mapping = row._mapping
    return JobSnapshot(**{name: mapping[COLUMN_KEY[name]] for name in FIELDS})


def snapshot(job: Job) -> JobSnapshot:
    """A frozen copy of an ORM row."""
    return JobSnapshot(**{name: getattr(job, name) for name in FIELDS})
