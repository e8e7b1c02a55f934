"""Recovering from an incident: the failed-jobs view and bulk replay (DESIGN §2).

``failures`` groups failed jobs by error code, provider and step; each group
carries the filter that selects exactly its jobs. ``replay`` re-queues every
failed or canceled job matching a filter, a page (``limit``) at a time, oldest
first, each through ``control.requeue``: it resumes from the step that did not
finish, and is held for admission (``pipeline.service.admission``) so that a replay of
thousands enters the queues at a bounded rate, behind live traffic.
Both are the same for the API (one tenant) and the operator CLI (every tenant,
or one with ``tenant``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from pipeline.core.lifecycle import JobStatus
from pipeline.service import control
from pipeline.store import jobs
from pipeline.store.models import Job, db

MAX_PAGE = 1000
"""At most this many jobs are replayed by one call (the answer's cursor goes on)."""
REPLAYABLE = (JobStatus.FAILED.value, JobStatus.CANCELED.value)
MAX_GROUPS = 100


@dataclass
class Filter:
    """What a replay (or a listing of failures) selects; every field given must match."""

    tenant: str | None = None
    ids: list | None = None
    status: list | None = None
    error_code: str | None = None
    provider: str | None = None
    operation: str | None = None
    step: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in
                   ("ids", "status", "error_code", "provider", "operation", "step", "created_after", "created_before"))

    def conditions(self) -> list:
        """SQL conditions of the filter (status defaults to failed and canceled)."""
        where = [Job.status.in_(self.status or REPLAYABLE)]
        if self.tenant is not None:
            where.append(Job.tenant_id == self.tenant)
        if self.ids is not None:
            where.append(Job.id.in_(list(self.ids)))
        if self.error_code is not None:
            where.append(Job.error["code"].as_string() == self.error_code)
        for name in ("provider", "operation", "step"):
            if getattr(self, name) is not None:
                where.append(getattr(Job, name) == getattr(self, name))
        if self.created_after is not None:
            where.append(Job.created_at > self.created_after)
        if self.created_before is not None:
            where.append(Job.created_at < self.created_before)
        return where


@dataclass
class Replayed:
    """The answer of one replay call."""

    dry_run: bool
    matched: int = 0
    requeued: int = 0
    remaining: int = 0
    next_cursor: str | None = None
    jobs: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _brief(job, requeued: bool | None) -> dict:
    error = job.error or {}
    return {"id": job.id, "tenant": job.tenant_id, "status": job.status, "step": job.step,
            "provider": job.provider, "operation": job.operation, "error_code": error.get("code"),
            "created_at": job.created_at.isoformat().replace("+00:00", "Z"), "requeued": requeued}


def replay(flt: Filter, by: str, limit: int = MAX_PAGE, after: str | None = None, dry_run: bool = False) -> Replayed:
    """Re-queue (or, ``dry_run``, only list) up to ``limit`` matching jobs with ids after ``after``.

    ``remaining`` counts the matching jobs past this page; ``next_cursor`` is
    the last id looked at, for the next call. A job that moved on between the
    read and its compare-and-set is matched but not re-queued.
    """
    where = flt.conditions()
    if after is not None:
        where.append(Job.id > after)
    rows = db.session.execute(select(Job).where(*where).order_by(Job.id).limit(min(limit, MAX_PAGE))).scalars().all()
    page = [jobs.snapshot(r) for r in rows]
    remaining = 0
    if page:
        remaining = db.session.execute(select(func.count()).select_from(Job).where(
            *where, Job.id > page[-1].id)).scalar_one()
    db.session.rollback()
    result = Replayed(dry_run=dry_run, matched=len(page), remaining=remaining,
                      next_cursor=page[-1].id if page and remaining else None)
    moved = set() if dry_run else control.replay_many(page, by)
    for job in page:
        done = None if dry_run else job.id in moved
        result.requeued += bool(done)
        result.jobs.append(_brief(job, done))
    return result


def failures(tenant: str | None, created_after: datetime, created_before: datetime | None = None) -> list[dict]:
    """Failed jobs created in the window, grouped by error code, provider and step, largest group first.

    Each group: ``count``, the first and last failure time, the latest
    failure's message and whether its code is retryable, and ``filter``: the
    replay filter that selects exactly the group's jobs.
    """
    flt = Filter(tenant=tenant, status=[JobStatus.FAILED.value], created_after=created_after,
                 created_before=created_before)
    code = Job.error["code"].as_string()
    keys = (code.label("error_code"), Job.provider.label("provider"), Job.step.label("step"))
    groups = db.session.execute(
        select(*keys, func.count().label("count"), func.min(Job.completed_at).label("first"),
               func.max(Job.completed_at).label("last"))
        .where(*flt.conditions()).group_by(*keys).order_by(func.count().desc()).limit(MAX_GROUPS)
    ).all()
    ranked = select(*keys, Job.error.label("error"), func.row_number().over(
        partition_by=keys, order_by=(Job.completed_at.desc(), Job.id.desc())).label("n")
    ).where(*flt.conditions()).subquery()
    latest = {(r.error_code, r.provider, r.step): r.error or {}
              for r in db.session.execute(select(ranked).where(ranked.c.n == 1)).all()}
    db.session.rollback()
    out = []
    for g in groups:
        error = latest.get((g.error_code, g.provider, g.step), {})
        out.append({
            "error_code": g.error_code, "provider": g.provider, "step": g.step, "count": g.count,
            "first_failed_at": iso(g.first), "last_failed_at": iso(g.last),
            "latest_message": error.get("message"), "retryable": error.get("retryable"),
            "filter": {k: v for k, v in {
                "status": [JobStatus.FAILED.value], "error_code": g.error_code, "provider": g.provider, "step": g.step,
                "created_after": iso(created_after), "created_before": iso(created_before)}.items()
                if v is not None},
        })
    return out


def iso(value):
    """ISO 8601 in UTC with a Z (None stays None)."""
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite aggregates come back naive (UTC)
        return value.isoformat() + "Z"
    return value.isoformat().replace("+00:00", "Z")
