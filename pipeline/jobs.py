"""The job store: the only code that writes a job's status, step, lease or events.

Every change is one conditional UPDATE (compare-and-set on what the caller
expects the row to hold) plus, when it matched, one appended event, in one
transaction. A late or duplicated message therefore finds its UPDATE matching
no row and changes nothing.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import case, func, or_, select, update

from pipeline import concurrency, events
from pipeline.ids import new_id
from pipeline.lifecycle import EVENT_FOR, JobStatus, Step, sources
from pipeline.models import Job, JobEvent, db, utcnow

ACTIVE_STATUSES = (JobStatus.QUEUED.value, JobStatus.PROCESSING.value)


def snapshot(job: Job) -> SimpleNamespace:
    """A plain copy of a row, safe to use after the session is released."""
    return SimpleNamespace(**{c.key: getattr(job, c.key) for c in Job.__mapper__.column_attrs})


def get(job_id: str, tenant_id: str | None = None) -> SimpleNamespace | None:
    """The job as a snapshot, or None (also None for another tenant's job)."""
    job = db.session.get(Job, job_id)
    if job is None or (tenant_id is not None and job.tenant_id != tenant_id):
        db.session.rollback()
        return None
    snap = snapshot(job)
    db.session.rollback()
    return snap


def request_digest(body: dict) -> str:
    """SHA-256 of a canonical JSON form of a request body (idempotency checks)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class NewJob:
    """What a validated submission asks for."""

    tenant_id: str
    operation: str
    providers: list
    prompt: str
    params: dict
    inputs: dict | None
    timeout_s: float
    deadline_s: float
    max_attempts: int
    priority: str = "normal"
    metadata: dict | None = None
    webhook: dict | None = None
    model: str | None = None
    idempotency_key: str | None = None
    request_sha256: str | None = None


def create(spec: NewJob) -> SimpleNamespace:
    """Insert a queued job and its ``queued`` event; returns the snapshot."""
    now = utcnow()
    job = Job(
        id=new_id("job"), tenant_id=spec.tenant_id, status=JobStatus.QUEUED.value,
        step=Step.VALIDATE.value, operation=spec.operation, providers=list(spec.providers),
        provider=spec.providers[0], model=spec.model, prompt=spec.prompt,
        prompt_sha256=hashlib.sha256(spec.prompt.encode()).hexdigest(), params=spec.params,
        inputs=spec.inputs, priority=spec.priority, timeout_s=spec.timeout_s,
        deadline_s=spec.deadline_s, max_attempts=spec.max_attempts, attempt=0, lost_count=0,
        step_outputs={}, timing={}, job_metadata=spec.metadata or {}, webhook=spec.webhook,
        idempotency_key=spec.idempotency_key, request_sha256=spec.request_sha256,
        event_seq=1, created_at=now, updated_at=now,
        deadline_at=now + timedelta(seconds=spec.deadline_s),
    )
    db.session.add(job)
    event = JobEvent(job_id=job.id, seq=1, type="queued", data={}, created_at=now)
    db.session.add(event)
    db.session.flush()
    # Read both before the commit expires them: afterwards each read is one more SELECT.
    snap, wire = snapshot(job), event_dict(event)
    db.session.commit()
    events.publish(job.id, wire)
    if spec.webhook:
        from pipeline import notify
        notify.on_event(job.id, spec.webhook, wire, spec.priority)
    return snap


def find_idempotent(tenant_id: str, key: str) -> SimpleNamespace | None:
    """The job a tenant made earlier with this Idempotency-Key, if any."""
    job = db.session.execute(
        select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key)
    ).scalar_one_or_none()
    snap = snapshot(job) if job else None
    db.session.rollback()
    return snap


def event_dict(event: JobEvent) -> dict:
    """The wire form of an event (SSE data, webhooks, pub/sub)."""
    return {
        "id": event.seq, "job_id": event.job_id, "type": event.type, "data": event.data or {},
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
    }


_ALL_COLUMNS = [attr.columns[0] for attr in Job.__mapper__.column_attrs]


def _snapshot_of_row(row) -> SimpleNamespace:
    """A snapshot from a RETURNING row of every column (saves reading the row again)."""
    mapping = row._mapping
    return SimpleNamespace(**{attr.key: mapping[attr.columns[0]] for attr in Job.__mapper__.column_attrs})


def _apply(job_id: str, where: list, values: dict, event_type: str | None, data=None, full: bool = False):
    """Run one compare-and-set UPDATE; append the event if it matched.

    ``data`` may be a callable given the updated row's (event_seq, attempt).
    Returns that row (every column when ``full``), or None when no row matched.
    """
    now = utcnow()
    values = dict(values, updated_at=now)
    if event_type:
        values["event_seq"] = Job.event_seq + 1
    stmt = (
        update(Job).where(Job.id == job_id, *where).values(**values)
        .returning(*(_ALL_COLUMNS if full else (Job.event_seq, Job.attempt, Job.webhook, Job.priority)))
        .execution_options(synchronize_session=False)
    )
    row = db.session.execute(stmt).one_or_none()
    if row is None:
        db.session.rollback()
        return None
    event = None
    if event_type:
        payload = data(row) if callable(data) else (data or {})
        event = JobEvent(job_id=job_id, seq=row.event_seq, type=event_type, data=payload, created_at=now)
        db.session.add(event)
    # The wire form before the commit expires the event (afterwards: one more SELECT).
    wire = event_dict(event) if event is not None else None
    db.session.commit()
    if event is not None:
        events.publish(job_id, wire)
        if row.webhook:
            # Non-terminal events a webhook subscribed to; terminal ones go through the notify step.
            from pipeline import notify
            notify.on_event(job_id, row.webhook, wire, row.priority or "normal")
    return row


def transition(job_id: str, to: JobStatus, *, expect: tuple = (), where: tuple = (),
               event_type: str | None = None, data: dict | None = None, **values) -> bool:
    """Move a job to ``to`` if its status allows it (and ``expect``, when given).

    Appends the status's event (or ``event_type``). False when the row did not
    match: the job moved on, or the move is illegal.
    """
    legal = {s.value for s in sources(to)}
    if expect:
        legal &= {JobStatus(s).value for s in expect}
    if not legal:
        return False
    conditions = [Job.status.in_(sorted(legal)), *where]
    values["status"] = JobStatus(to).value
    if JobStatus(to) in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED):
        values.setdefault("completed_at", utcnow())
        values.setdefault("lease_owner", None)
        values.setdefault("lease_until", None)
    return _apply(job_id, conditions, values, event_type or EVENT_FOR.get(JobStatus(to)), data) is not None


def record(job_id: str, event_type: str | None, data: dict | None = None, *,
           where: tuple = (), **values) -> bool:
    """Change fields of an active job without moving its status; append an event."""
    conditions = [Job.status.in_(ACTIVE_STATUSES), *where]
    return _apply(job_id, conditions, values, event_type, data) is not None


def claim(job_id: str, step: Step, owner: str, lease_s: float) -> SimpleNamespace | None:
    """Take the lease on ``step`` for ``owner``; None when someone else has it or the job moved on.

    ``generate`` moves the job to ``processing``; ``validate`` runs while queued.
    """
    now = utcnow()
    step = Step(step)
    values = {"lease_owner": owner, "lease_until": now + timedelta(seconds=lease_s), "task_id": owner,
              # The same message coming back while its lease is held means the process
              # running it died (a requeue on worker loss): that attempt counts as lost.
              "lost_count": case((Job.lease_owner == owner, Job.lost_count + 1), else_=Job.lost_count)}
    if step is Step.VALIDATE:
        statuses = (JobStatus.QUEUED.value,)
    else:
        # generate, and upload when a retried job resumes there, move a queued job on.
        statuses = ACTIVE_STATUSES
        values["status"] = JobStatus.PROCESSING.value
        if step is Step.GENERATE:
            values["attempt"] = Job.attempt + 1
    where = [
        Job.status.in_(statuses), Job.step == step.value, Job.deadline_at > now,
        or_(Job.lease_until.is_(None), Job.lease_until < now, Job.lease_owner == owner),
    ]
    if step is Step.GENERATE:
        values["started_at"] = func.coalesce(Job.started_at, now)
        # Per-tenant concurrency: a queued job also needs a free slot of its tenant.
        where.append(concurrency.claim_condition())
        concurrency.serialize_claims(job_id)
    row = _apply(job_id, where, values, "started",
                 lambda r: {"step": step.value, "attempt": r.attempt}, full=True)
    if row is None:
        return None
    return _snapshot_of_row(row)


def renew(job_id: str, owner: str, lease_s: float) -> bool:
    """Extend ``owner``'s lease; False when it was lost (the job moved on or was re-leased)."""
    stmt = (
        update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.status.in_(ACTIVE_STATUSES))
        .values(lease_until=utcnow() + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    matched = db.session.execute(stmt).rowcount == 1
    db.session.commit()
    return matched


def events_after(job_id: str, after_seq: int = 0, limit: int = 1000) -> list[dict]:
    """The job's events with seq > after_seq, oldest first."""
    rows = db.session.execute(
        select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > after_seq)
        .order_by(JobEvent.seq).limit(limit)
    ).scalars().all()
    out = [event_dict(e) for e in rows]
    db.session.rollback()
    return out


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)
