"""Per-tenant concurrency: at most N of a tenant's jobs in ``generate`` at once.

N is the tenant's own ``concurrency`` (tenants row), else the largest
``concurrency`` of its live API keys (``genline keys create --concurrency``),
else ``GENLINE_TENANT_CONCURRENCY``.

A job holds a slot while it is ``processing`` at step ``generate`` (running, or
waiting out a retry backoff). The generate claim of a queued job takes a slot
in the same compare-and-set UPDATE that claims it (``claim_condition``);
claims of one tenant are serialized by a Postgres advisory lock (SQLite
serializes writers anyway), so two workers cannot both take the last slot.

A job that finds no free slot is *parked*: its message is dropped, so it holds
no worker process, and it stays ``queued`` at step ``generate``. When a job of
the tenant leaves ``generate`` its worker wakes the next parked ones (``wake``).
As a backstop for a lost wake-up (a cancel during backoff, a deadline failure
by the reaper, a crash), a parked job's in-flight marker is kept short, so the
reaper sends it again every few reaper intervals.
"""
from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import case, select

from pipeline.adapters import dispatch, events
from pipeline.core import priorities
from pipeline.core.lifecycle import JobStatus, Step
from pipeline.store import jobs
from pipeline.store.models import Job, db, utcnow
from pipeline.store.slots import CLAIM_LOCK, claim_condition, limit_of, running_of

__all__ = ["CLAIM_LOCK", "claim_condition", "default_limit", "free_slots", "limit_of", "park", "running_of", "wake"]

log = logging.getLogger("genline.concurrency")

PARKED = "genline:parked:{}"
"""Redis set of a tenant's parked job ids: only these are woken. A queued job at
step generate whose message is still on its way is not parked, and sending it
another message would only make a duplicate for a worker to drop. A lost set
(Redis restart) leaves the reaper's backstop."""

PRIORITY_RANK = case(priorities.RANK, value=Job.priority, else_=priorities.RANK[priorities.DEFAULT])


def _config():
    return current_app.extensions["genline.config"]


def default_limit() -> int:
    """The limit of a tenant with none of its own (``GENLINE_TENANT_CONCURRENCY``)."""
    return _config().tenant_concurrency


def park(job_id: str) -> bool:
    """After a refused generate claim: if the job waits for a slot, shorten its marker. True if parked."""
    job = db.session.get(Job, job_id)
    waiting = (job is not None and job.status == JobStatus.QUEUED.value and job.step == Step.GENERATE.value
               and job.lease_owner is None and job.held is None and job.deadline_at > utcnow())
    tenant = job.tenant_id if job is not None else None
    marker = dispatch.marker_key(job) if job is not None else None
    db.session.rollback()
    if not waiting:
        return False
    ttl = max(2, round(3 * _config().reaper_interval_s))
    try:
        events.client().pipeline().set(marker, "1", ex=ttl).sadd(
            PARKED.format(tenant), job_id).execute()
    except Exception as exc:  # noqa: BLE001 - without a marker the reaper resends it sooner; still correct
        log.warning("parked marker not set job_id=%s error=%s", job_id, exc)
    log.info("job parked job_id=%s tenant=%s reason=tenant-concurrency", job_id, tenant)
    return True


def free_slots(tenant_id: str) -> int:
    """How many more of the tenant's jobs may enter generate now."""
    limit = db.session.execute(select(limit_of(tenant_id, _config().tenant_concurrency))).scalar_one()
    running = db.session.execute(select(running_of(tenant_id))).scalar_one()
    db.session.rollback()
    return max(0, int(limit) - int(running))


def wake(tenant_id: str) -> int:
    """Send generate for the tenant's next parked jobs, one per free slot; returns how many.

    Called by the worker whose job just left ``generate``. A failure here only
    delays the parked jobs until the reaper's backstop, so it is logged, not raised.
    """
    try:
        return _wake(tenant_id)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        db.session.rollback()
        log.warning("wake failed tenant=%s error=%s", tenant_id, exc.__class__.__name__)
        return 0


def _wake(tenant_id: str) -> int:
    parked = {m.decode() for m in events.client().smembers(PARKED.format(tenant_id))}
    if not parked:
        return 0
    free = free_slots(tenant_id)
    if not free:
        return 0
    rows = db.session.execute(
        select(Job).where(Job.id.in_(sorted(parked)), Job.status == JobStatus.QUEUED.value,
                          Job.step == Step.GENERATE.value, Job.lease_owner.is_(None),
                          Job.held.is_(None), Job.deadline_at > utcnow())
        .order_by(PRIORITY_RANK, Job.id)
    ).scalars().all()
    waiting = [jobs.snapshot(r) for r in rows[:free]]
    db.session.rollback()
    # Woken ones get a message now; ids no longer waiting (claimed, canceled, failed) are stale.
    done = parked - {r.id for r in rows[free:]}
    events.client().srem(PARKED.format(tenant_id), *done)
    for job in waiting:
        dispatch.send_step(job, Step.GENERATE)
        log.info("job woken job_id=%s tenant=%s", job.id, tenant_id)
    return len(waiting)
