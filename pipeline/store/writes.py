"""The job store's one write path: a ``Change`` applied by ``apply``.

A change is one conditional UPDATE (compare-and-set on what the caller expects
the row to hold) plus, when it matched, one appended event and a step's staged
images, in one transaction. ``apply`` returns what it wrote (``Written``) and
publishes nothing: the named operations of ``pipeline.store.jobs`` do.

On Postgres a change is one statement (the event and staged images as
data-modifying CTEs), built once per shape and run as a transaction of its own
(``pipeline.store.autocommit``): one round trip. On SQLite the event and the
images are statements of their own in the session's transaction.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, case, delete, func, insert, literal, or_, select, update
from sqlalchemy.sql import ClauseElement

from pipeline.core.lifecycle import JobStatus, Step
from pipeline.store import autocommit, slots, staging
from pipeline.store.models import Job, JobEvent, db, utcnow
from pipeline.store.snapshot import ALL_COLUMNS, COLUMN_KEY, JobSnapshot, of_row

JOBS, EVENTS = Job.__table__, JobEvent.__table__
_EVENT_INSERT = insert(EVENTS)


@dataclass(frozen=True)
class Written:
    """What one write committed: the job's row after it and the events it appended, in order."""

    job: JobSnapshot
    events: tuple[dict, ...] = ()


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
    in_one = events_in_statement()
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
    return [Written(job, (wire(job.id, job.event_seq, change.event, _data(change, job), now),)
                    if change.event else ())
            for change, job in ((change, of_row(row)) for change, row in found)]


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
        column = JOBS.c[COLUMN_KEY[key]]
        columns[column] = literals[key] if key in literals else bindparam(f"v_{key}", type_=column.type)
    for key in shape.counts:
        column = JOBS.c[COLUMN_KEY[key]]
        columns[column] = column + 1
    columns[JOBS.c.updated_at] = now
    if shape.event:
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
    moved = update(JOBS).where(*where).values(columns).returning(*ALL_COLUMNS)
    event = shape.event
    if not (in_one and (event or shape.clears_staged or shape.stages is not None)):
        return moved
    cte = moved.cte("moved")
    stmt = select(cte)
    if event:
        data = (func.json_build_object("step", shape.claim.value, "attempt", cte.c.attempt)
                if shape.claim is not None else bindparam("event_data", type_=EVENTS.c.data.type))
        stmt = stmt.add_cte(insert(EVENTS).from_select(
            ["job_id", "seq", "type", "data", "created_at"],
            select(cte.c.id, cte.c.event_seq, literal(event), data, now)).cte("logged"))
    if shape.clears_staged:
        stmt = stmt.add_cte(delete(staging.STAGED).where(staging.STAGED.c.job_id.in_(select(cte.c.id)))
                            .cte("cleared"))
    elif shape.stages is not None:
        stmt = stmt.add_cte(*staging.staging_ctes(cte, shape.stages))
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


def events_in_statement() -> bool:
    """Postgres: an UPDATE and its event are one statement (a data-modifying CTE).

    SQLite has no data-modifying CTEs: there the event is a second INSERT.
    """
    return db.engine.dialect.name == "postgresql"


def wire(job_id: str, seq: int, event_type: str, data: dict, created_at: datetime) -> dict:
    """The wire form of an event from its parts (``event_dict`` of a row not read back)."""
    return {"id": seq, "job_id": job_id, "type": event_type, "data": data or {},
            "created_at": created_at.isoformat().replace("+00:00", "Z")}
