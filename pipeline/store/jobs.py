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
from functools import lru_cache
from types import SimpleNamespace

from sqlalchemy import bindparam, case, delete, func, insert, literal, or_, select, update

from pipeline.adapters import events
from pipeline.core.ids import new_id
from pipeline.core.lifecycle import EVENT_FOR, JobStatus, Step, sources
from pipeline.service import concurrency
from pipeline.store import onetrip, staging
from pipeline.store.models import Job, JobEvent, db, utcnow

ACTIVE_STATUSES = (JobStatus.QUEUED.value, JobStatus.PROCESSING.value)


def snapshot(job: Job) -> SimpleNamespace:
    """A plain copy of a row, safe to use after the session is released."""
    return SimpleNamespace(**{c.key: getattr(job, c.key) for c in Job.__mapper__.column_attrs})


def get(job_id: str, tenant_id: str | None = None) -> SimpleNamespace | None:
    """The job as a snapshot, or None (also None for another tenant's job)."""
    found = onetrip.rows(_GET, {"job_id": job_id})
    row = found[0] if found else None
    if row is None or (tenant_id is not None and row.tenant_id != tenant_id):
        return None
    return _snapshot_of_row(row)


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


def create(spec: NewJob, publish=None) -> SimpleNamespace:
    """Insert a queued job and its ``queued`` event; returns the snapshot.

    Core INSERTs (on Postgres one statement, in one round trip), and the
    snapshot made from the values inserted: the ORM's unit of work, and the
    SELECT it needed for the columns left unset, cost more than the rest of a
    submission. After the commit the event is published:
    ``publish(job_id, event)`` when given, else ``events.publish``.
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
    event = SimpleNamespace(job_id=row["id"], seq=1, type="queued", data={}, created_at=now)
    if _events_in_statement() and onetrip.available():
        onetrip.execute(_create_statement(tuple(sorted(row))), dict(row, event_data={}))
    else:
        db.session.execute(JOBS.insert(), row)
        db.session.execute(EVENTS.insert(), vars(event))
        db.session.commit()
    snap, wire = SimpleNamespace(**values), event_dict(event)
    (publish or events.publish)(snap.id, wire)
    if spec.webhook:
        from pipeline.worker import notify
        notify.on_event(snap.id, spec.webhook, wire, spec.priority)
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
    return _wire(event.job_id, event.seq, event.type, event.data, event.created_at)


JOBS, EVENTS = Job.__table__, JobEvent.__table__
_ALL_COLUMNS = [attr.columns[0] for attr in Job.__mapper__.column_attrs]
_COLUMN_KEY = {attr.key: attr.columns[0].key for attr in Job.__mapper__.column_attrs}
"""Mapped attribute name -> column name (``job_metadata`` is the column ``metadata``)."""
_EVENT_RETURNING = (JOBS.c.event_seq, JOBS.c.attempt, JOBS.c.webhook, JOBS.c.priority)
_EVENT_INSERT = insert(EVENTS)
_GET = select(*_ALL_COLUMNS).where(JOBS.c.id == bindparam("job_id"))


def _snapshot_of_row(row) -> SimpleNamespace:
    """A snapshot from a RETURNING row of every column (saves reading the row again)."""
    mapping = row._mapping
    return SimpleNamespace(**{attr: mapping[column] for attr, column in _COLUMN_KEY.items()})


def _apply(job_id: str, where: list, values: dict, event_type: str | None, data=None):
    """Run one compare-and-set UPDATE; append the event if it matched; commit.

    ``data`` may be a callable given the updated row's (event_seq, attempt).
    Returns that row, or None when no row matched. For the rarer moves (cancel,
    retry, fail, progress); a step's claim and end have statements of their own.

    SQLAlchemy Core on the session's connection, not ORM ``update(Job)`` and
    ``session.add``: the ORM's bulk-update and unit-of-work paths cost a few ms
    of Python per call.
    """
    now = utcnow()
    values = {_COLUMN_KEY[k]: v for k, v in values.items()}
    values["updated_at"] = now
    if event_type:
        values["event_seq"] = JOBS.c.event_seq + 1
    stmt = update(JOBS).where(JOBS.c.id == job_id, *where).values(values).returning(*_EVENT_RETURNING)
    return _write(stmt, None, job_id, event_type, data, now)


def _write(stmt, params: dict | None, job_id: str, event_type: str | None, data, now: datetime, also=None,
           logged: bool = False, prefix: str | None = None):
    """Execute the UPDATE ``stmt``; if it matched, append the event, run ``also``, commit and publish.

    ``logged``: ``stmt`` inserted the event row itself (a Postgres CTE); only publish it.
    ``prefix``: SQL run first in the same transaction (``pipeline.store.onetrip``).
    """
    if (logged or not event_type) and also is None and params is not None and onetrip.available():
        # (``params`` given: the statement is one built once, with bound parameters.)
        # The whole write is this one statement: one round trip, committed as it runs.
        found = onetrip.execute(stmt, params, prefix)
        row = found[0] if found else None
        if row is None:
            return None
        payload = data(row) if callable(data) else (data or {})
    else:
        connection = db.session.connection()
        if prefix:
            connection.exec_driver_sql(prefix, params)
        row = connection.execute(stmt, params).one_or_none()
        if row is None:
            db.session.rollback()
            return None
        payload = data(row) if callable(data) else (data or {})
        if event_type and not logged:
            connection.execute(_EVENT_INSERT, {"job_id": job_id, "seq": row.event_seq, "type": event_type,
                                               "data": payload, "created_at": now})
        if also is not None:
            also(connection)
        db.session.commit()
    wire = _wire(job_id, row.event_seq, event_type, payload, now) if event_type else None
    if wire is not None:
        events.publish(job_id, wire)
        if row.webhook:
            # Non-terminal events a webhook subscribed to; terminal ones go through the notify step.
            from pipeline.worker import notify
            notify.on_event(job_id, row.webhook, wire, row.priority or "normal")
    return row


def _wire(job_id: str, seq: int, event_type: str, data: dict, created_at: datetime) -> dict:
    """The wire form of an event from its parts (``event_dict`` of a row not read back)."""
    return {"id": seq, "job_id": job_id, "type": event_type, "data": data or {},
            "created_at": created_at.isoformat().replace("+00:00", "Z")}


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


def end_step(job_id: str, step: Step, owner: str, values: dict, *, to: JobStatus | None = None,
             data: dict | None = None, stages: list[dict] | None = None, clears_staged: bool = False) -> bool:
    """Record the end of ``owner``'s run of ``step``: set ``values``, release the lease.

    ``to``: also move the job to that status and append its event with ``data``
    (a step's end that completes the job). ``stages``: staged rows
    (``staging.rows_of``) replacing the job's, in the same transaction.
    ``clears_staged``: remove the job's staged images in it too (they are uploaded).
    False when the lease was lost (the job was canceled or re-leased).

    The hot path of every step: the statement is built once per shape and, on
    Postgres, the UPDATE, its event and the staged images' writes are one
    statement, in one round trip (``pipeline.store.onetrip``).
    """
    if clears_staged and stages is not None:
        raise ValueError("a step's end either stages images or clears them")
    now = utcnow()
    values = dict(values, lease_owner=None, lease_until=None)
    event_type = EVENT_FOR[JobStatus(to)] if to is not None else None
    if to is not None:
        values["status"] = JobStatus(to).value
        statuses = tuple(sorted(s.value for s in sources(to)))
    else:
        statuses = ACTIVE_STATUSES
    in_one = _events_in_statement()
    stmt = _end_statement(Step(step).value, tuple(sorted(values)), statuses, event_type, in_one,
                          clears_staged and in_one, len(stages) if in_one and stages is not None else None)
    params = {f"v_{key}": value for key, value in values.items()}
    params.update(job_id=job_id, owner=owner, now=now, event_data=data or {})
    also = None
    if in_one:
        params.update(staging.staging_params(stages or []))
    else:
        if stages is not None:
            also = staging.replacing(job_id, stages)
        if clears_staged:
            also = staging.both(also, staging.clearing(job_id))
    return _write(stmt, params, job_id, event_type, data, now, also, logged=in_one) is not None


def _events_in_statement() -> bool:
    """Postgres: an UPDATE and its event are one statement (a data-modifying CTE).

    SQLite has no data-modifying CTEs: there the event is a second INSERT.
    """
    return db.engine.dialect.name == "postgresql"


def _with_event(moved, event_type: str, data, now):
    """``moved`` (an UPDATE ... RETURNING id, event_seq as a CTE) appending its event:
    the SELECT of the CTE's row, with the INSERT of the event attached."""
    logged = insert(EVENTS).from_select(
        ["job_id", "seq", "type", "data", "created_at"],
        select(moved.c.id, moved.c.event_seq, literal(event_type), data, now),
    ).cte("logged")
    return select(moved).add_cte(logged)


@lru_cache(maxsize=64)
def _end_statement(step: str, keys: tuple, statuses: tuple, event_type: str | None, in_one: bool,
                   clears: bool = False, stages: int | None = None):
    """The compare-and-set UPDATE of a step's end (bound: job_id, owner, now, v_<key>, event_data).

    ``in_one`` (Postgres): it also appends the ``event_type`` event, with
    ``clears`` deletes the job's staged images, and with ``stages`` replaces
    them by that many (bound: s<i>_<field>), all as data-modifying CTEs.
    """
    now = bindparam("now", type_=JOBS.c.updated_at.type)
    columns = {JOBS.c[_COLUMN_KEY[key]]: bindparam(f"v_{key}", type_=JOBS.c[_COLUMN_KEY[key]].type) for key in keys}
    columns[JOBS.c.updated_at] = now
    if event_type:
        columns[JOBS.c.event_seq] = JOBS.c.event_seq + 1
    moved = (update(JOBS).where(JOBS.c.id == bindparam("job_id"), onetrip.constant_in(JOBS.c.status, statuses),
                                JOBS.c.lease_owner == bindparam("owner", type_=JOBS.c.lease_owner.type),
                                JOBS.c.step == step)
             .values(columns).returning(*_EVENT_RETURNING, JOBS.c.id))
    if not (in_one and (event_type or clears or stages is not None)):
        return moved
    moved = moved.cte("moved")
    stmt = (_with_event(moved, event_type, bindparam("event_data", type_=EVENTS.c.data.type), now)
            if event_type else select(moved))
    if clears:
        stmt = stmt.add_cte(delete(staging.STAGED).where(staging.STAGED.c.job_id.in_(select(moved.c.id)))
                            .cte("cleared"))
    elif stages is not None:
        stmt = stmt.add_cte(*staging.staging_ctes(moved, stages))
    return stmt


def record_progress(job_id: str, owner: str, progress: float, data: dict) -> bool:
    """Append a ``progress`` event of ``owner``'s running step and set the job's progress.

    A model's per-step events come at every denoising step, so they take the
    hot path's form: one statement built once (with the event, on Postgres).
    False when the lease is gone (the job was canceled or re-leased).
    """
    now = utcnow()
    in_one = _events_in_statement()
    params = {"job_id": job_id, "owner": owner, "now": now, "v_progress": progress, "event_data": data}
    return _write(_progress_statement(in_one), params, job_id, "progress", data, now, logged=in_one) is not None


@lru_cache(maxsize=2)
def _progress_statement(in_one: bool):
    now = bindparam("now", type_=JOBS.c.updated_at.type)
    moved = (update(JOBS).where(JOBS.c.id == bindparam("job_id"), onetrip.constant_in(JOBS.c.status, ACTIVE_STATUSES),
                                JOBS.c.lease_owner == bindparam("owner", type_=JOBS.c.lease_owner.type))
             .values({JOBS.c.progress: bindparam("v_progress", type_=JOBS.c.progress.type), JOBS.c.updated_at: now,
                      JOBS.c.event_seq: JOBS.c.event_seq + 1})
             .returning(*_EVENT_RETURNING, JOBS.c.id))
    if not in_one:
        return moved
    return _with_event(moved.cte("moved"), "progress", bindparam("event_data", type_=EVENTS.c.data.type), now)


def claim(job_id: str, step: Step, owner: str, lease_s: float) -> SimpleNamespace | None:
    """Take the lease on ``step`` for ``owner``; None when someone else has it or the job moved on.

    ``generate`` moves the job to ``processing``; ``validate`` runs while queued.
    """
    now = utcnow()
    step = Step(step)
    params = {"job_id": job_id, "owner": owner, "now": now, "until": now + timedelta(seconds=lease_s)}
    in_one = _events_in_statement()
    row = _write(_claim_statement(step, concurrency.default_limit(), in_one), params, job_id, "started",
                 lambda r: {"step": step.value, "attempt": r.attempt}, now, logged=in_one,
                 prefix=concurrency.CLAIM_LOCK if step is Step.GENERATE and in_one else None)
    if row is None:
        return None
    return _snapshot_of_row(row)


@lru_cache(maxsize=16)
def _claim_statement(step: Step, tenant_limit: int, with_event: bool):
    """The claim's compare-and-set UPDATE of ``step``, built once (bound: job_id, owner, now, until).

    Three claims run per job; building the statement each time cost more than
    running it. ``with_event`` (Postgres): one statement that also appends the
    ``started`` event, in a data-modifying CTE, saving a round trip per claim.
    """
    owner, now = bindparam("owner", type_=JOBS.c.lease_owner.type), bindparam("now", type_=JOBS.c.updated_at.type)
    values = {"lease_owner": owner, "lease_until": bindparam("until", type_=JOBS.c.lease_until.type),
              "task_id": owner, "updated_at": now, "event_seq": JOBS.c.event_seq + 1,
              # The same message coming back while its lease is held means the process
              # running it died (a requeue on worker loss): that attempt counts as lost.
              "lost_count": case((JOBS.c.lease_owner == owner, JOBS.c.lost_count + 1), else_=JOBS.c.lost_count)}
    if step is Step.VALIDATE:
        statuses = (JobStatus.QUEUED.value,)
    else:
        # generate, and upload when a retried job resumes there, move a queued job on.
        statuses = ACTIVE_STATUSES
        values["status"] = JobStatus.PROCESSING.value
        if step is Step.GENERATE:
            values["attempt"] = JOBS.c.attempt + 1
    where = [
        JOBS.c.id == bindparam("job_id"), onetrip.constant_in(JOBS.c.status, statuses),
        JOBS.c.step == step.value, JOBS.c.deadline_at > now, JOBS.c.held.is_(None),
        or_(JOBS.c.lease_until.is_(None), JOBS.c.lease_until < now, JOBS.c.lease_owner == owner),
    ]
    if step is Step.GENERATE:
        values["started_at"] = func.coalesce(JOBS.c.started_at, now)
        # Per-tenant concurrency: a queued job also needs a free slot of its tenant.
        where.append(concurrency.claim_condition(tenant_limit))
    claimed = update(JOBS).where(*where).values(values).returning(*_ALL_COLUMNS)
    if not with_event:
        return claimed
    claimed = claimed.cte("claimed")
    return _with_event(claimed, "started", func.json_build_object("step", step.value, "attempt", claimed.c.attempt), now)


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
    rows = onetrip.rows(_EVENTS_AFTER, {"job_id": job_id, "after": after_seq, "limit": limit})
    return [_wire(r.job_id, r.seq, r.type, r.data, r.created_at) for r in rows]


_EVENTS_AFTER = (select(EVENTS.c.job_id, EVENTS.c.seq, EVENTS.c.type, EVENTS.c.data, EVENTS.c.created_at)
                 .where(EVENTS.c.job_id == bindparam("job_id"), EVENTS.c.seq > bindparam("after"))
                 .order_by(EVENTS.c.seq).limit(bindparam("limit")))


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def transition_seen(moves: list, to: JobStatus) -> list[str]:
    """Move several jobs to ``to``, each only if its row is still as its snapshot saw it; returns the ids moved.

    ``moves``: ``(snapshot, values, data)`` with the same ``values`` keys for
    all. Each is a compare-and-set on the snapshot's ``event_seq`` (nothing
    happened to the job since it was read) and a legal status; the events are
    appended in the same transaction, and everything commits once: a bulk
    replay of a thousand jobs is one commit, not a thousand.
    """
    if not moves:
        return []
    now = utcnow()
    legal = sorted(s.value for s in sources(to))
    keys = sorted(moves[0][1])
    columns = {JOBS.c[_COLUMN_KEY[k]]: bindparam(f"v_{k}", type_=JOBS.c[_COLUMN_KEY[k]].type) for k in keys}
    columns.update({JOBS.c.status: JobStatus(to).value, JOBS.c.updated_at: now, JOBS.c.event_seq: JOBS.c.event_seq + 1})
    stmt = (update(JOBS).where(JOBS.c.id == bindparam("m_id"), JOBS.c.event_seq == bindparam("m_seq"),
                               JOBS.c.status.in_(legal))
            .values(columns).returning(*_EVENT_RETURNING))
    event_type = EVENT_FOR[JobStatus(to)]
    connection = db.session.connection()
    moved, logged = [], []
    for job, values, data in moves:
        params = {f"v_{k}": values[k] for k in keys}
        row = connection.execute(stmt, dict(params, m_id=job.id, m_seq=job.event_seq)).one_or_none()
        if row is not None:
            moved.append((job.id, row))
            logged.append({"job_id": job.id, "seq": row.event_seq, "type": event_type, "data": data, "created_at": now})
    if logged:
        connection.execute(_EVENT_INSERT, logged)
    db.session.commit()
    for (job_id, row), event in zip(moved, logged):
        wire = _wire(job_id, event["seq"], event_type, event["data"], now)
        events.publish(job_id, wire)
        if row.webhook:
            from pipeline.worker import notify
            notify.on_event(job_id, row.webhook, wire, row.priority or "normal")
    return [job_id for job_id, _row in moved]
