"""The job store: the only code that writes a job's status, step, lease or events.

Every write is a ``Change``: one conditional UPDATE (compare-and-set on what
the caller expects the row to hold) plus, when it matched, one appended event
(and a step's staged images), in one transaction, applied by ``apply``. A late
or duplicated message therefore finds its UPDATE matching no row and changes
nothing. ``apply`` returns what it wrote (``Written``: the row after it and its
events); the named operations below (``claim``, ``end_step``, ``transition``…)
build their ``Change`` and hand the events to the publisher the application
installed (``use_publisher``, ``pipeline.app``): the store imports nothing
above it.

On Postgres a write is one statement (the event and staged images as
data-modifying CTEs), built once per shape and run as a transaction of its own
(``pipeline.store.autocommit``): one round trip.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, case, delete, func, insert, literal, or_, select, update
from sqlalchemy.sql import ClauseElement

from pipeline.core.ids import new_id
from pipeline.core.lifecycle import EVENT_FOR, JobStatus, Step, sources
from pipeline.store import autocommit, slots, staging
from pipeline.store.models import Job, JobEvent, db, utcnow

ACTIVE_STATUSES = (JobStatus.QUEUED.value, JobStatus.PROCESSING.value)
TERMINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)


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


def snapshot(job: Job) -> JobSnapshot:
    """A frozen copy of an ORM row."""
    return JobSnapshot(**{name: getattr(job, name) for name in FIELDS})


def get(job_id: str, tenant_id: str | None = None) -> JobSnapshot | None:
    """The job as a snapshot, or None (also None for another tenant's job)."""
    found = autocommit.rows(_GET, {"job_id": job_id})
    row = found[0] if found else None
    if row is None or (tenant_id is not None and row.tenant_id != tenant_id):
        return None
    return _snapshot_of_row(row)


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


@dataclass(frozen=True)
class Written:
    """What one write committed: the job's row after it and the events it appended, in order."""

    job: JobSnapshot
    events: tuple[dict, ...] = ()


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
    if _events_in_statement() and autocommit.available():
        autocommit.execute(_create_statement(tuple(sorted(row))), dict(row, event_data={}))
    else:
        db.session.execute(JOBS.insert(), row)
        db.session.execute(EVENTS.insert(), event)
        db.session.commit()
    snap = JobSnapshot(**values)
    publish(Written(snap, (_wire(snap.id, 1, "queued", {}, now),)), publish_event)
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
    return _wire(event.job_id, event.seq, event.type, event.data, event.created_at)


JOBS, EVENTS = Job.__table__, JobEvent.__table__
FIELDS = tuple(f.name for f in fields(JobSnapshot))
_COLUMN_KEY = {attr.key: attr.columns[0].key for attr in Job.__mapper__.column_attrs}
"""Mapped attribute name -> column name (``job_metadata`` is the column ``metadata``)."""
_ALL_COLUMNS = [JOBS.c[_COLUMN_KEY[name]] for name in FIELDS]
_EVENT_INSERT = insert(EVENTS)
_GET = select(*_ALL_COLUMNS).where(JOBS.c.id == bindparam("job_id"))


def _snapshot_of_row(row) -> JobSnapshot:
    """A snapshot from a row of every column (a RETURNING saves reading the row again)."""
    mapping = row._mapping
    return JobSnapshot(**{name: mapping[_COLUMN_KEY[name]] for name in FIELDS})


def _wire(job_id: str, seq: int, event_type: str, data: dict, created_at: datetime) -> dict:
    """The wire form of an event from its parts (``event_dict`` of a row not read back)."""
    return {"id": seq, "job_id": job_id, "type": event_type, "data": data or {},
            "created_at": created_at.isoformat().replace("+00:00", "Z")}


# --- the one write path -----------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One compare-and-set write of a job row, and the event it appends when it matches.

    The row must have ``job_id``, a status in ``statuses`` and, when given,
    ``owner`` as lease owner, ``step`` as step and ``seq`` as event_seq (nothing
    happened since it was read), and match ``where`` (more SQL conditions).
    Then ``values`` (attribute -> value) are set, ``counts`` (attributes)
    incremented, ``event`` appended with ``data``, and ``stages`` (staged rows,
    ``staging.rows_of``) replace the job's staged images, or ``clears_staged``
    removes them. ``claim``: take the lease of that step for ``owner`` until
    ``until`` (``jobs.claim``).

    A change without ``where`` and with plain values has a statement built once
    per shape (what is set and checked), with the values bound.
    """

    job_id: str
    statuses: tuple[str, ...]
    values: Mapping[str, Any] = field(default_factory=dict)
    event: str | None = None
    data: dict | None = None
    owner: str | None = None
    step: str | None = None
    seq: int | None = None
    counts: tuple[str, ...] = ()
    where: tuple = ()
    stages: tuple[dict, ...] | None = None
    clears_staged: bool = False
    claim: Step | None = None
    until: datetime | None = None
    tenant_limit: int = 0

    def __post_init__(self) -> None:
        if self.clears_staged and self.stages is not None:
            raise ValueError("a write either stages images or clears them")
        if self.claim is not None and (self.owner is None or self.until is None):
            raise ValueError("a claim needs its owner and lease end")


def apply(change: Change) -> Written | None:
    """Apply ``change``: the job row after it and the event appended, or None when no row matched.

    One transaction. Run as a transaction of its own, in one round trip, when
    the session holds none (``pipeline.store.autocommit``); otherwise in the
    session's, which it commits.
    """
    written = _apply_all([change])
    return written[0] if written else None


def apply_seen(changes: list[Change]) -> list[Written]:
    """Apply several changes in one transaction, one commit; what each that matched wrote."""
    return _apply_all(changes)


def _apply_all(changes: list[Change]) -> list[Written]:
    now = utcnow()
    in_one = _events_in_statement()
    prepared = [(change, _statement(change, in_one), _params(change, now)) for change in changes]
    found: list[tuple[Change, Any]] = []
    if len(changes) == 1 and autocommit.available():
        change, stmt, params = prepared[0]
        rows = autocommit.execute(stmt, params, _prefix(change, in_one))
        found = [(change, rows[0])] if rows else []
    else:
        connection = db.session.connection()
        for change, stmt, params in prepared:
            prefix = _prefix(change, in_one)
            if prefix:
                connection.exec_driver_sql(prefix, {"job_id": change.job_id})
            row = connection.execute(stmt, params).one_or_none()
            if row is None:
                continue
            found.append((change, row))
            if not in_one:
                _write_rest(connection, change, row, now)
        if found:
            db.session.commit()
        else:
            db.session.rollback()
    return [Written(job, (_wire(job.id, job.event_seq, change.event, _data(change, job), now),)
                    if change.event else ())
            for change, job in ((change, _snapshot_of_row(row)) for change, row in found)]


def _write_rest(connection, change: Change, row, now: datetime) -> None:
    """Without data-modifying CTEs (SQLite): the event and staged images, as statements of their own."""
    if change.event:
        connection.execute(_EVENT_INSERT, {"job_id": change.job_id, "seq": row.event_seq, "type": change.event,
                                           "data": _data(change, row), "created_at": now})
    if change.stages is not None:
        staging.replacing(change.job_id, list(change.stages))(connection)
    if change.clears_staged:
        staging.clearing(change.job_id)(connection)


def _data(change: Change, row) -> dict:
    if change.claim is not None:
        return {"step": change.claim.value, "attempt": row.attempt}
    return change.data or {}


def _prefix(change: Change, in_one: bool) -> str | None:
    """Postgres: a generate claim runs under its tenant's claim lock (``slots.CLAIM_LOCK``)."""
    return slots.CLAIM_LOCK if change.claim is Step.GENERATE and in_one else None


def _params(change: Change, now: datetime) -> dict:
    params = {f"v_{key}": value for key, value in change.values.items()}
    params.update(job_id=change.job_id, now=now, event_data=change.data or {})
    if change.owner is not None:
        params["owner"] = change.owner
    if change.seq is not None:
        params["seq"] = change.seq
    if change.until is not None:
        params["until"] = change.until
    if change.stages:
        params.update(staging.staging_params(list(change.stages)))
    return params


def _statement(change: Change, in_one: bool):
    """The statement of ``change``: built once per shape, unless it has SQL of its own."""
    literal_values = tuple(sorted((k, v) for k, v in change.values.items() if isinstance(v, ClauseElement)))
    if change.where or literal_values:
        return _build(change, in_one, literal_values)
    return _shaped(_shape(change), in_one)


@dataclass(frozen=True)
class _Shape:
    statuses: tuple[str, ...]
    keys: tuple[str, ...]
    event: str | None
    owned: bool
    step: str | None
    seen: bool
    counts: tuple[str, ...]
    stages: int | None
    clears_staged: bool
    claim: Step | None
    tenant_limit: int


def _shape(change: Change) -> _Shape:
    return _Shape(tuple(sorted(change.statuses)), tuple(sorted(change.values)), change.event, change.owner is not None,
                  change.step, change.seq is not None, tuple(sorted(change.counts)),
                  len(change.stages) if change.stages is not None else None, change.clears_staged, change.claim,
                  change.tenant_limit)


@lru_cache(maxsize=128)
def _shaped(shape: _Shape, in_one: bool):
    return _build(shape, in_one, ())


def _build(change: Change | _Shape, in_one: bool, literal_values: tuple):
    """The UPDATE ... RETURNING every column of a change (bound: job_id, now, v_<key>, owner,
    seq, until, event_data, s<i>_<field>) and, on Postgres, its event and staged images as CTEs."""
    now = bindparam("now", type_=JOBS.c.updated_at.type)
    if isinstance(change, Change):
        shape, where = _shape(change), list(change.where)
    else:
        shape, where = change, []
    literals = dict(literal_values)
    columns: dict = {}
    for key in shape.keys:
        column = JOBS.c[_COLUMN_KEY[key]]
        columns[column] = literals[key] if key in literals else bindparam(f"v_{key}", type_=column.type)
    for key in shape.counts:
        column = JOBS.c[_COLUMN_KEY[key]]
        columns[column] = column + 1
    columns[JOBS.c.updated_at] = now
    if shape.event or shape.claim is not None:
        columns[JOBS.c.event_seq] = JOBS.c.event_seq + 1
    where += [JOBS.c.id == bindparam("job_id"), autocommit.constant_in(JOBS.c.status, shape.statuses)]
    owner = bindparam("owner", type_=JOBS.c.lease_owner.type)
    if shape.claim is not None:
        where += _claim_where(shape.claim, shape.tenant_limit, owner, now)
        columns.update(_claim_values(shape.claim, owner, now))
    elif shape.owned:
        where.append(JOBS.c.lease_owner == owner)
    if shape.step is not None:
        where.append(JOBS.c.step == shape.step)
    if shape.seen:
        where.append(JOBS.c.event_seq == bindparam("seq", type_=JOBS.c.event_seq.type))
    moved = update(JOBS).where(*where).values(columns).returning(*_ALL_COLUMNS)
    event = "started" if shape.claim is not None else shape.event
    if not (in_one and (event or shape.clears_staged or shape.stages is not None)):
        return moved
    moved = moved.cte("moved")
    stmt = select(moved)
    if event:
        data = (func.json_build_object("step", shape.claim.value, "attempt", moved.c.attempt)
                if shape.claim is not None else bindparam("event_data", type_=EVENTS.c.data.type))
        stmt = stmt.add_cte(insert(EVENTS).from_select(
            ["job_id", "seq", "type", "data", "created_at"],
            select(moved.c.id, moved.c.event_seq, literal(event), data, now)).cte("logged"))
    if shape.clears_staged:
        stmt = stmt.add_cte(delete(staging.STAGED).where(staging.STAGED.c.job_id.in_(select(moved.c.id)))
                            .cte("cleared"))
    elif shape.stages is not None:
        stmt = stmt.add_cte(*staging.staging_ctes(moved, shape.stages))
    return stmt


def _claim_where(step: Step, tenant_limit: int, owner, now) -> list:
    where = [JOBS.c.step == step.value, JOBS.c.deadline_at > now, JOBS.c.held.is_(None),
             or_(JOBS.c.lease_until.is_(None), JOBS.c.lease_until < now, JOBS.c.lease_owner == owner)]
    if step is Step.GENERATE:
        # Per-tenant concurrency: a queued job also needs a free slot of its tenant.
        where.append(slots.claim_condition(tenant_limit))
    return where


def _claim_values(step: Step, owner, now) -> dict:
    values = {JOBS.c.lease_owner: owner, JOBS.c.lease_until: bindparam("until", type_=JOBS.c.lease_until.type),
              # The same message coming back while its lease is held means the process
              # running it died (a requeue on worker loss): that attempt counts as lost.
              JOBS.c.lost_count: case((JOBS.c.lease_owner == owner, JOBS.c.lost_count + 1),
                                      else_=JOBS.c.lost_count)}
    if step is not Step.VALIDATE:
        # generate, and upload when a retried job resumes there, move a queued job on.
        values[JOBS.c.status] = JobStatus.PROCESSING.value
    if step is Step.GENERATE:
        values[JOBS.c.attempt] = JOBS.c.attempt + 1
        values[JOBS.c.started_at] = func.coalesce(JOBS.c.started_at, now)
    return values


def _events_in_statement() -> bool:
    """Postgres: an UPDATE and its event are one statement (a data-modifying CTE).

    SQLite has no data-modifying CTEs: there the event is a second INSERT.
    """
    return db.engine.dialect.name == "postgresql"


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
    written = _published(Change(job_id, statuses, owner=owner, claim=step, until=until, tenant_limit=tenant_limit))
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


def renew(job_id: str, owner: str, lease_s: float) -> bool:
    """Extend ``owner``'s lease; False when it was lost (the job moved on or was re-leased).

    No event and no ``updated_at``: a lease's renewal is not a change of the job.
    """
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
    rows = autocommit.rows(_EVENTS_AFTER, {"job_id": job_id, "after": after_seq, "limit": limit})
    return [_wire(r.job_id, r.seq, r.type, r.data, r.created_at) for r in rows]


_EVENTS_AFTER = (select(EVENTS.c.job_id, EVENTS.c.seq, EVENTS.c.type, EVENTS.c.data, EVENTS.c.created_at)
                 .where(EVENTS.c.job_id == bindparam("job_id"), EVENTS.c.seq > bindparam("after"))
                 .order_by(EVENTS.c.seq).limit(bindparam("limit")))


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)
