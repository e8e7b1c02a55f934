"""The job store: the only code that writes a job's status, step, lease or events.

Every write is a ``Change`` (``pipeline.store.writes``): one conditional
UPDATE (compare-and-set on what the caller expects the row to hold) plus, when
it matched, one appended event, in one transaction. A late or duplicated
message therefore finds its UPDATE matching no row and changes nothing.
``apply`` returns what it wrote; the named operations here (``claim``,
``end_step``, ``transition``…) build their ``Change``, apply it and hand the
events to the publishers the application installed (``use_publisher``,
``pipeline.app``): the store imports nothing above it. Reads hand out frozen
``JobSnapshot``s (``pipeline.store.snapshot``).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from flask import current_app
from sqlalchemy import bindparam, insert, literal, select, tuple_, update

from pipeline.core.ids import new_id
from pipeline.core.lifecycle import EVENT_FOR, JobStatus, Step, sources
from pipeline.store import autocommit
from pipeline.store.models import Job, JobEvent, db, utcnow
from pipeline.store.snapshot import ALL_COLUMNS, JobSnapshot, of_row, snapshot
from pipeline.store.writes import EVENTS, JOBS, Change, Written, apply, apply_seen, events_in_statement, wire

__all__ = ["ACTIVE_STATUSES", "Change", "JobSnapshot", "NewJob", "Written", "apply", "apply_seen", "claim", "create",
           "end_step", "event_dict", "events_after", "find_idempotent", "get", "publish", "record", "record_progress",
           "renew", "request_digest", "seconds_between", "snapshot", "transition", "transition_seen", "use_publisher"]

ACTIVE_STATUSES = (JobStatus.QUEUED.value, JobStatus.PROCESSING.value)
TERMINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)


_GET = select(*ALL_COLUMNS).where(JOBS.c.id == bindparam("job_id"))


def get(job_id: str, tenant_id: str | None = None) -> JobSnapshot | None:
    """The job as a snapshot, or None (also None for another tenant's job)."""
    found = autocommit.rows(_GET, {"job_id": job_id})
    row = found[0] if found else None
    if row is None or (tenant_id is not None and row.tenant_id != tenant_id):
        return None
    return of_row(row)


def request_digest(body: dict) -> str:
    """SHA-256 of a canonical JSON form of a request body (idempotency checks)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --- publishing ---------------------------------------------------------------------------------

EventPublisher = Callable[[str, dict], None]
WebhookPublisher = Callable[[str, dict, dict, str], None]


@dataclass
class _Publishers:
    event: EventPublisher | None = None
    webhook: WebhookPublisher | None = None


_PUBLISHERS = _Publishers()


def use_publisher(event: EventPublisher, webhook: WebhookPublisher) -> None:
    """Install what publishes committed events: ``event(job_id, event)`` (pub/sub) and
    ``webhook(job_id, event, webhook, priority)`` for a job with a webhook (``pipeline.app``)."""
    _PUBLISHERS.event, _PUBLISHERS.webhook = event, webhook


def publish(written: Written, event: EventPublisher | None = None) -> None:
    """Hand ``written``'s events to the installed publishers (``event``: instead of pub/sub)."""
    for item in written.events:
        sender = event or _PUBLISHERS.event
        if sender is not None:
            sender(written.job.id, item)
        if written.job.webhook and _PUBLISHERS.webhook is not None:
            _PUBLISHERS.webhook(written.job.id, item, written.job.webhook, written.job.priority or "normal")


# --- creating ---------------------------------------------------------------------------------


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


def create(spec: NewJob, publish_event: EventPublisher | None = None) -> JobSnapshot:
    """Insert a queued job and its ``queued`` event; returns the snapshot.

    Core INSERTs (on Postgres one statement, in one round trip), and the
    snapshot made from the values inserted: the ORM's unit of work, and the
    SELECT it needed for the columns left unset, cost more than the rest of a
    submission. After the commit the event is published
    (``publish_event(job_id, event)`` instead of pub/sub when given).
    """
    now = utcnow()
    given = dict(
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
    row, values = {}, {}
    for attr in Job.__mapper__.column_attrs:
        column = attr.columns[0]
        if attr.key in given:
            value = row[column.name] = given[attr.key]
        elif column.default is not None:
            # The column's Python-side default, applied as the ORM would.
            default = column.default
            value = row[column.name] = default.arg(None) if default.is_callable else default.arg
        else:
            value = None  # left out of the INSERT (SQL NULL), as the ORM did
        # As reading the row back would give it: JSON decoded afresh, floats as floats.
        if value is not None and column.type.python_type in (dict, float):
            value = json.loads(json.dumps(value)) if column.type.python_type is dict else float(value)
        values[attr.key] = value
    event = {"job_id": row["id"], "seq": 1, "type": "queued", "data": {}, "created_at": now}
    if events_in_statement() and autocommit.available():
        autocommit.execute(_create_statement(tuple(sorted(row))), dict(row, event_data={}))
    else:
        db.session.execute(JOBS.insert(), row)
        db.session.execute(EVENTS.insert(), event)
        db.session.commit()
    snap = JobSnapshot(**values)
    publish(Written(snap, (wire(snap.id, 1, "queued", {}, now),)), publish_event)
    return snap


@lru_cache(maxsize=8)
def _create_statement(columns: tuple):
    """Postgres: the INSERT of a job (bound by column name) and of its ``queued`` event
    (bound: event_data), one statement: a data-modifying CTE."""
    made = (insert(JOBS).values({JOBS.c[name]: bindparam(name, type_=JOBS.c[name].type) for name in columns})
            .returning(JOBS.c.id, JOBS.c.created_at).cte("made"))
    return insert(EVENTS).from_select(
        ["job_id", "seq", "type", "data", "created_at"],
        select(made.c.id, literal(1), literal("queued"), bindparam("event_data", type_=EVENTS.c.data.type),
               made.c.created_at),
    ).add_cte(made)


def find_idempotent(tenant_id: str, key: str) -> JobSnapshot | None:
    """The job a tenant made earlier with this Idempotency-Key, if any."""
    job = db.session.execute(
        select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key)
    ).scalar_one_or_none()
    snap = snapshot(job) if job else None
    db.session.rollback()
    return snap


def event_dict(event: JobEvent) -> dict:
    """The wire form of an event (SSE data, webhooks, pub/sub)."""
    return wire(event.job_id, event.seq, event.type, event.data, event.created_at)


# --- named operations ---------------------------------------------------------------------------


def _published(change: Change) -> Written | None:
    written = apply(change)
    if written is not None:
        publish(written)
    return written


def _statuses_to(to: JobStatus, expect: tuple = ()) -> tuple[str, ...]:
    legal = {s.value for s in sources(to)}
    if expect:
        legal &= {JobStatus(s).value for s in expect}
    return tuple(sorted(legal))


def _terminal_values(to: JobStatus, values: dict) -> dict:
    values = dict(values, status=JobStatus(to).value)
    if JobStatus(to) in TERMINAL:
        values.setdefault("completed_at", utcnow())
        values.setdefault("lease_owner", None)
        values.setdefault("lease_until", None)
    return values


def transition(job_id: str, to: JobStatus, *, expect: tuple = (), where: tuple = (), owner: str | None = None,
               event_type: str | None = None, data: dict | None = None, **values) -> bool:
    """Move a job to ``to`` if its status allows it (and ``expect``, when given).

    Appends the status's event (or ``event_type``). False when the row did not
    match: the job moved on, or the move is illegal. ``owner``: only while it holds the lease.
    """
    statuses = _statuses_to(to, expect)
    if not statuses:
        return False
    change = Change(job_id, statuses, _terminal_values(to, values), event_type or EVENT_FOR.get(JobStatus(to)),
                    data, owner=owner, where=tuple(where))
    return _published(change) is not None


def record(job_id: str, event_type: str | None, data: dict | None = None, *, where: tuple = (),
           owner: str | None = None, counts: tuple[str, ...] = (), **values) -> Written | None:
    """Change fields of an active job without moving its status; append an event (if any).

    ``owner``: only while it holds the lease. The row written, or None when it did not match.
    """
    return _published(Change(job_id, ACTIVE_STATUSES, values, event_type, data, owner=owner, where=tuple(where),
                             counts=counts))


def end_step(job_id: str, step: Step, owner: str, values: dict, *, to: JobStatus | None = None,
             data: dict | None = None, stages: list[dict] | None = None, clears_staged: bool = False) -> bool:
    """Record the end of ``owner``'s run of ``step``: set ``values``, release the lease.

    ``to``: also move the job to that status and append its event with ``data``
    (a step's end that completes the job). ``stages``: staged rows
    (``staging.rows_of``) replacing the job's, in the same transaction.
    ``clears_staged``: remove the job's staged images in it too (they are uploaded).
    False when the lease was lost (the job was canceled or re-leased).
    """
    values = dict(values, lease_owner=None, lease_until=None)
    if to is not None:
        values["status"] = JobStatus(to).value
    change = Change(job_id, _statuses_to(to) if to is not None else ACTIVE_STATUSES, values,
                    EVENT_FOR[JobStatus(to)] if to is not None else None, data, owner=owner, step=Step(step).value,
                    stages=tuple(stages) if stages is not None else None, clears_staged=clears_staged)
    return _published(change) is not None


def record_progress(job_id: str, owner: str, progress: float, data: dict) -> bool:
    """Append a ``progress`` event of ``owner``'s running step and set the job's progress.

    False when the lease is gone (the job was canceled or re-leased).
    """
    change = Change(job_id, ACTIVE_STATUSES, {"progress": progress}, "progress", data, owner=owner)
    return _published(change) is not None


def claim(job_id: str, step: Step, owner: str, lease_s: float, tenant_limit: int | None = None) -> JobSnapshot | None:
    """Take the lease on ``step`` for ``owner``; None when someone else has it or the job moved on.

    ``generate`` moves the job to ``processing`` and takes a slot of its tenant
    (``tenant_limit``: the limit of a tenant with none of its own, default
    ``GENLINE_TENANT_CONCURRENCY``); ``validate`` runs while queued.
    """
    step = Step(step)
    if tenant_limit is None:
        tenant_limit = current_app.extensions["genline.config"].tenant_concurrency if step is Step.GENERATE else 0
    statuses = (JobStatus.QUEUED.value,) if step is Step.VALIDATE else ACTIVE_STATUSES
    until = utcnow() + timedelta(seconds=lease_s)
    written = _published(Change(job_id, statuses, event="started", owner=owner, claim=step, until=until,
                                tenant_limit=tenant_limit))
    return written.job if written is not None else None


def transition_seen(moves: list, to: JobStatus) -> list[str]:
    """Move several jobs to ``to``, each only if its row is still as its snapshot saw it; returns the ids moved.

    ``moves``: ``(snapshot, values, data)``. Each is a compare-and-set on the
    snapshot's ``event_seq`` (nothing happened to the job since it was read)
    and a legal status; everything commits once: a bulk replay of a thousand
    jobs is one commit, not a thousand.
    """
    statuses = _statuses_to(to)
    changes = [Change(job.id, statuses, _terminal_values(to, values), EVENT_FOR[JobStatus(to)], data, seq=job.event_seq)
               for job, values, data in moves]
    written = apply_seen(changes)
    for item in written:
        publish(item)
    return [item.job.id for item in written]


def renew(leases: list[tuple[str, str]], lease_s: float) -> set[str]:
    """Extend each ``(job id, owner)`` lease by ``lease_s``, in one statement; the ids whose
    lease was still held (the others were lost: the job moved on or was re-leased).

    One statement for all of a worker process's leases: an I/O worker holds hundreds,
    and renewing them one by one took a round trip each every ``lease_s / 3``, so that
    on a loaded host the last were renewed after they had expired.
    No event and no ``updated_at``: a lease's renewal is not a change of the job.
    """
    if not leases:
        return set()
    stmt = (
        update(Job).where(tuple_(Job.id, Job.lease_owner).in_(leases), Job.status.in_(ACTIVE_STATUSES))
        .values(lease_until=utcnow() + timedelta(seconds=lease_s))
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    held: set[str] = set(db.session.execute(stmt).scalars())
    db.session.commit()
    return held


def events_after(job_id: str, after_seq: int = 0, limit: int = 1000) -> list[dict]:
    """The job's events with seq > after_seq, oldest first."""
    rows = autocommit.rows(_EVENTS_AFTER, {"job_id": job_id, "after": after_seq, "limit": limit})
    return [wire(r.job_id, r.seq, r.type, r.data, r.created_at) for r in rows]


_EVENTS_AFTER = (select(EVENTS.c.job_id, EVENTS.c.seq, EVENTS.c.type, EVENTS.c.data, EVENTS.c.created_at)
                 .where(EVENTS.c.job_id == bindparam("job_id"), EVENTS.c.seq > bindparam("after"))
                 .order_by(EVENTS.c.seq).limit(bindparam("limit")))


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)
