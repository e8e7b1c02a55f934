"""Admission: queued jobs held out of the queues until they may enter them.

A hold lives on the job row (``held``, ``admit_at``), so a restart of any
process loses nothing; Redis only keeps the rate windows (the ``limits``
library, Flask-Limiter's own backend).

- ``replay``: a bulk replay (``pipeline.service.replay``) re-queues jobs held. They
  enter the queues oldest first, at most ``GENLINE_REPLAY_RATE`` (all
  replays together), and only while their queue holds fewer than
  ``REPLAY_BACKLOG`` messages: live traffic of the same priority goes first.
  Their deadline starts again when they are admitted.
- ``throttle``: a job about to enter generate whose tenant used up its
  ``GENLINE_TENANT_THROTTLE`` window (``throttle_gate``) waits, holding no
  worker process, until the window has room (``admit_at``); its deadline keeps
  running, as any queue wait does.

``admit_once`` (beat, every second) sends the step of every job whose time
came. Each release is a compare-and-set on the hold, so two beats never admit
a job twice; a crash between the write and the send leaves a queued job with
no marker, which the reaper sends.
"""
from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import limits
from flask import current_app
from limits.strategies import MovingWindowRateLimiter
from redis import RedisError
from sqlalchemy import exists, func, or_, select
from sqlalchemy.exc import DBAPIError

from pipeline.adapters import broker, dispatch, redisurl, routing
from pipeline.core.lifecycle import JobStatus, Step
from pipeline.store import jobs
from pipeline.store.models import ApiKey, Job, Tenant, db, utcnow

log = logging.getLogger("genline.admission")

REPLAY, THROTTLE = "replay", "throttle"
BATCH = 500
"""At most this many held jobs are looked at per pass and kind."""
INTERVAL_S = 1.0
"""How often beat runs the admission pass."""
REPLAY_BACKLOG = 4
"""Replayed jobs enter a queue only while it holds fewer messages than this (or than
one pass's worth of GENLINE_REPLAY_RATE, when that is more)."""
OVERRIDES_TTL_S = 5.0
"""How long a process trusts its last look for per-key or per-tenant throttles."""


def _config():
    return current_app.extensions["genline.config"]


def limiter() -> MovingWindowRateLimiter:
    """This app's moving-window limiter on its Redis (made once per app)."""
    ext = current_app.extensions
    if "genline.admission" not in ext:
        storage = redisurl.limits_storage(_config().redis_url, key_prefix="genline",
                                          socket_connect_timeout=2, socket_timeout=2)
        ext["genline.admission"] = MovingWindowRateLimiter(storage)
    return ext["genline.admission"]


def take(rate: str, *identifiers: str) -> float | None:
    """Take one slot of ``rate`` for ``identifiers``: None if taken, else when (epoch s) one frees.

    Each item of a rate like ``5/second;100/hour`` is hit in turn: a moving
    window's hit checks and takes atomically in Redis, so two workers racing
    for a tenant's last slot never both get it. An item that is full stops
    there; the items before it keep their slot (stricter, never looser).
    """
    window = limiter()
    for item in limits.parse_many(rate):
        if not window.hit(item, *identifiers):
            return window.get_window_stats(item, *identifiers).reset_time
    return None


# --- holding -----------------------------------------------------------------------------------

def hold(job_id: str, kind: str, until: datetime, **values) -> bool:
    """Hold a queued job that no worker has (compare-and-set); no event, it stays ``queued``."""
    return jobs.record(job_id, None, where=(Job.status == JobStatus.QUEUED.value, Job.held.is_(None),
                                            Job.lease_owner.is_(None)),
                       held=kind, admit_at=until, **values) is not None


def release(job, now: datetime) -> jobs.JobSnapshot | None:
    """End the hold of ``job`` (a snapshot) if it still has it; a replay's deadline starts now.

    The job as released (to send its message), or None when it no longer had the hold.
    """
    # The send that follows is a new message: a fresh dispatch token, so the marker of the
    # message that met the hold (alive until the deadline) cannot hide it if it is lost.
    values: dict[str, Any] = {"held": None, "admit_at": None, "step_outputs": dispatch.with_new_token(job.step_outputs)}
    if job.held == REPLAY:
        values["deadline_at"] = now + timedelta(seconds=job.deadline_s)
    done = jobs.record(job.id, None, where=(Job.status == JobStatus.QUEUED.value, Job.held == job.held), **values)
    return done.job if done is not None else None


def waiting(tenant_id: str | None = None) -> int:
    """How many replayed jobs (of a tenant, or of all) wait for admission."""
    stmt = select(func.count()).select_from(Job).where(Job.held == REPLAY, Job.status == JobStatus.QUEUED.value)
    if tenant_id is not None:
        stmt = stmt.where(Job.tenant_id == tenant_id)
    count = db.session.execute(stmt).scalar_one()
    db.session.rollback()
    return count


# --- the tenant throttle -------------------------------------------------------------------------

_overrides_seen: dict[str, tuple[float, bool]] = {}


def _overrides_exist() -> bool:
    """True when some live key or tenant has a throttle of its own (looked up every few seconds)."""
    url = _config().database_url
    seen = _overrides_seen.get(url)
    if seen is not None and time.monotonic() - seen[0] < OVERRIDES_TTL_S:
        return seen[1]
    keys = exists().where(ApiKey.throttle.isnot(None), ApiKey.revoked_at.is_(None))
    tenants = exists().where(Tenant.throttle.isnot(None))
    found = bool(db.session.execute(select(or_(keys, tenants))).scalar())
    db.session.rollback()
    _overrides_seen[url] = (time.monotonic(), found)
    return found


def _per_second(rate: str) -> float:
    return min(item.amount / item.get_expiry() for item in limits.parse_many(rate))


def throttle_of(tenant_id: str) -> str | None:
    """The tenant's throttle: its own, else its live keys' most permissive, else GENLINE_TENANT_THROTTLE."""
    own = db.session.execute(select(Tenant.throttle).where(Tenant.id == tenant_id)).scalar_one_or_none()
    keys = db.session.execute(select(ApiKey.throttle).where(
        ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None), ApiKey.throttle.isnot(None))).scalars().all()
    db.session.rollback()
    if own:
        return own
    if keys:
        return max(keys, key=_per_second)
    return _config().tenant_throttle


def throttle_gate(job_id: str) -> bool:
    """Before a generate claim: may this job start now? False when it was held for its tenant's throttle.

    Only a queued job entering generate counts as a start (a retry attempt of a
    running job does not). Redis down: the throttle is skipped with a warning.
    """
    if _config().tenant_throttle is None and not _overrides_exist():
        return True
    job = jobs.get(job_id)
    if (job is None or job.status != JobStatus.QUEUED.value or job.step != Step.GENERATE.value
            or job.held is not None or job.lease_owner is not None):
        return True  # the claim decides
    rate = throttle_of(job.tenant_id)
    if rate is None:
        return True
    try:
        free_at = take(rate, "throttle", job.tenant_id)
    except Exception as exc:  # noqa: BLE001 - the broker's Redis is down too; the claim still holds concurrency
        log.warning("throttle unavailable job_id=%s tenant=%s error=%s", job_id, job.tenant_id, exc.__class__.__name__)
        return True
    if free_at is None:
        return True
    until = datetime.fromtimestamp(free_at, timezone.utc)
    if hold(job_id, THROTTLE, until):
        log.info("job throttled job_id=%s tenant=%s rate=%s until=%s", job_id, job.tenant_id, rate, until.isoformat())
    return False


# --- the admission pass --------------------------------------------------------------------------

def _held(kind: str, *conditions) -> list:
    rows = db.session.execute(
        select(Job).where(Job.held == kind, Job.status == JobStatus.QUEUED.value, *conditions)
        .order_by(Job.admit_at, Job.id).limit(BATCH)
    ).scalars().all()
    snaps = [jobs.snapshot(r) for r in rows]
    db.session.rollback()
    return snaps


def queue_depth(queue: str) -> int:
    """Messages waiting in a broker queue (kombu's ``queue_declare``)."""
    return broker.queue_depths(current_app.extensions["celery"], [queue])[queue]


def admit_once() -> dict:
    """One admission pass: send held jobs whose time came; returns how many of each kind.

    With the database or Redis down the pass is skipped with one warning line
    (beat runs it again in a second); the holds wait on the rows.
    """
    try:
        return _admit()
    except (DBAPIError, RedisError, OSError) as exc:
        try:
            db.session.rollback()
        except DBAPIError:
            pass
        log.warning("admission skipped error=%s", exc.__class__.__name__)
        return {"skipped": exc.__class__.__name__}


def _admit() -> dict:
    now = utcnow()
    done = {THROTTLE: 0, REPLAY: 0}
    for job in _held(THROTTLE, Job.admit_at <= now):
        released = release(job, now)
        if released is not None:
            dispatch.send_step(released, Step.GENERATE)
            done[THROTTLE] += 1
    done[REPLAY] = _admit_replays(now)
    if any(done.values()):
        log.info("admitted throttle=%s replay=%s", done[THROTTLE], done[REPLAY])
    return done


def _admit_replays(now: datetime) -> int:
    """Admit replayed jobs oldest first, within GENLINE_REPLAY_RATE, behind live work of their priority."""
    rate = _config().replay_rate
    backlog = max(REPLAY_BACKLOG, math.ceil(_per_second(rate) * INTERVAL_S))
    depth: dict[str, int] = {}
    admitted = 0
    for job in _held(REPLAY, Job.admit_at <= now):
        # Live work of its priority, on both worker kinds: a live job validating in io.normal
        # generates in compute.normal next, and a replay resuming at generate must not pass it.
        queue = job.priority or "normal"
        if queue not in depth:
            depth[queue] = sum(queue_depth(q) for q in routing.priority_queues(job.priority))
        if depth[queue] >= backlog:
            continue  # live work of this priority waits in the queues: it goes first
        if take(rate, "replay") is not None:
            break
        released = release(job, now)
        if released is not None:
            dispatch.send_step(released, Step(job.step))
            log.info("job admitted job_id=%s step=%s reason=replay", job.id, job.step)
            depth[queue] += 1
            admitted += 1
    return admitted
