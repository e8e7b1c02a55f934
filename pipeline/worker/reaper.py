"""The reaper: the job row wins. Run by beat every GENLINE_REAPER_INTERVAL_S.

1. An active job past its deadline fails with ``deadline_exceeded``.
2. An active job whose lease expired lost its worker (SIGKILL, machine loss,
   hard time limit): its step is sent again, or after GENLINE_MAX_LOST losses
   the job fails with ``internal_error`` instead of looping.
3. An active job with no lease and no in-flight marker of the message its row
   waits for (``dispatch.marker_key``: a marker of an earlier message does not
   count) lost that message (a Redis restart, a send that failed): its step is
   sent again. After a Redis failover no marker is trusted
   (``dispatch.forget_markers_of_another_primary``).
4. An active job with no lease whose marker stays but whose message can no
   longer be waiting lost that message in transit: its step is sent again.

Why the fourth: kombu's Redis transport pops a message with ``BRPOP`` and
records it as unacknowledged only once the answer reaches the consumer, so a
message popped for a worker whose link just died (a host cut off) is gone while
its marker, for a plain message, lives until past the deadline. A marker cannot
tell that its own message vanished; the queues can: a message still waiting is
in one of them. So a job is taken for lost in transit when all of these hold:

- it has waited unclaimed (its row unchanged) for ``UNCLAIMED_LEASES`` lease
  periods: a message a live worker pops is claimed within milliseconds;
- its marker is a plain message's (it outlives the deadline, ``PAST_DEADLINE_S``):
  a countdown (retry backoff) message is held by a worker, in no queue, and a
  parked job has none, but their markers are short and expire on their own
  (rule 3 then applies), so sending them early would only skip a backoff;
- every queue its step can be on is empty (``broker.queue_depths``, read once
  per pass and only when some job is suspect): a message behind a backlog is
  left alone, however long it waits.

A message merely slow to start (reserved by a live worker with prefetch) may
still arrive: the copy sent here and that one race for the claim, a
compare-and-set on the step and the lease (``jobs.claim``), and the loser is
dropped. The send is a move like a lost worker's: a fresh dispatch token and
``updated_at`` in a compare-and-set on the unchanged row, so the job is not
suspect again for another ``UNCLAIMED_LEASES`` lease periods.

Every move is a compare-and-set, so a reaper racing a worker changes nothing twice.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from kombu.exceptions import OperationalError as BrokerError
from redis import RedisError
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from pipeline.adapters import broker, dispatch, events, metrics, routing
from pipeline.core import budget
from pipeline.core.errors import DeadlineExceeded, InternalError
from pipeline.core.lifecycle import Step
from pipeline.store import jobs
from pipeline.store.models import Job, db, utcnow
from pipeline.worker.failing import fail

log = logging.getLogger("genline.reaper")

BATCH = 500
CURSOR = "genline:reaper:cursor"
"""Redis key: the last job id the previous pass checked for a lost message."""
SETTLE_S = 2.0
"""A job changed this recently may have its message in flight without a marker yet."""
UNCLAIMED_LEASES = 4
"""Lease periods a job waits unclaimed, its queues empty, before its message counts as lost in
transit (rule 4): 32 s with the default GENLINE_LEASE_S."""


def _active(*conditions):
    rows = db.session.execute(
        select(Job).where(Job.status.in_(jobs.ACTIVE_STATUSES), *conditions).limit(BATCH)
    ).scalars().all()
    snaps = [jobs.snapshot(r) for r in rows]
    db.session.rollback()
    return snaps


def _unleased(condition) -> list:
    """The next BATCH active jobs matching ``condition``, by id after the previous pass's last.

    A backlog can hold more unleased jobs (queued, with their messages waiting)
    than one pass reads; going on from where the last pass stopped, wrapping
    round, checks every one of them every few passes, not the same first BATCH.
    """
    client = events.client()
    after = (client.get(CURSOR) or b"").decode()
    rows = db.session.execute(
        select(Job).where(Job.status.in_(jobs.ACTIVE_STATUSES), condition, Job.id > after)
        .order_by(Job.id).limit(BATCH)
    ).scalars().all()
    snaps = [jobs.snapshot(r) for r in rows]
    db.session.rollback()
    client.set(CURSOR, snaps[-1].id if len(snaps) == BATCH else "", ex=3600)
    return snaps


def overdue(job, now) -> bool:
    """Whether ``job`` (a snapshot) is active past its deadline: the reaper's first rule, for one job."""
    return (job.status in jobs.ACTIVE_STATUSES and job.deadline_at is not None and job.deadline_at <= now
            and job.held != "replay")


def fail_overdue(job) -> bool:
    """Fail an active job past its deadline with ``deadline_exceeded`` (compare-and-set); False if it moved on.

    The reaper does this every pass; a read of the job does it too, so a job
    reaches a terminal state by its deadline even while no beat is running.
    """
    return fail(job, Step(job.step or "validate"), DeadlineExceeded(f"the job passed its deadline of {job.deadline_s:g}s"))


def reap_once(now: datetime | None = None) -> dict:
    """One pass of the reaper at ``now`` (the current time unless a test moves it); returns
    what it did, by kind.

    With the database or Redis down the pass is skipped with one warning line
    (beat runs it again next interval), instead of a traceback every second.
    """
    try:
        return _reap(now or utcnow())
    except (DBAPIError, PoolTimeout, RedisError) as exc:
        try:
            db.session.rollback()
        except DBAPIError:
            pass
        log.warning("reaper skipped error=%s", exc.__class__.__name__)
        return {"skipped": exc.__class__.__name__}


def _reap(now: datetime) -> dict:
    cfg = current_app.extensions["genline.config"]
    done = {"deadline": 0, "lost_worker": 0, "lost_message": 0, "lost_in_transit": 0, "gave_up": 0,
            "markers_forgotten": 0}

    # A job held for replay admission has no running deadline yet (it starts when admitted).
    for job in _active(Job.deadline_at <= now, or_(Job.held.is_(None), Job.held != "replay")):
        if fail_overdue(job):
            done["deadline"] += 1

    for job in _active(Job.lease_until < now, Job.deadline_at > now):
        if job.lost_count + 1 >= cfg.max_lost:
            error = InternalError(f"the worker running step {job.step} was lost {job.lost_count + 1} times")
            if fail(job, Step(job.step), error, owner=job.lease_owner):
                done["gave_up"] += 1
            continue
        step_outputs = dispatch.with_new_token(job.step_outputs)
        released = jobs.record(job.id, None, where=(Job.lease_until < now,), owner=job.lease_owner,
                               counts=("lost_count",), lease_owner=None, lease_until=None, step_outputs=step_outputs)
        if released:
            log.warning("worker lost job_id=%s step=%s attempt=%s lost_count=%s", job.id, job.step, job.attempt,
                        released.job.lost_count)
            dispatch.send_step(released.job, Step(job.step))
            done["lost_worker"] += 1

    # After a failover the markers may speak for messages the new primary never had.
    done["markers_forgotten"] = dispatch.forget_markers_of_another_primary(events.client())
    settled = now - timedelta(seconds=SETTLE_S)
    # Held jobs (pipeline.service.admission) have no message on purpose: the admission pass sends them.
    candidates = _unleased(and_(Job.lease_until.is_(None), Job.updated_at < settled, Job.deadline_at > now,
                                Job.held.is_(None)))
    if candidates:
        markers = events.client().mget([dispatch.marker_key(j) for j in candidates])
        for job, marker in zip(candidates, markers):
            if marker is None:
                log.warning("message lost job_id=%s step=%s status=%s", job.id, job.step, job.status)
                dispatch.send_step(job, Step(job.step))
                done["lost_message"] += 1
        done["lost_in_transit"] = _send_lost_in_transit(
            [job for job, marker in zip(candidates, markers) if marker is not None], now, cfg.lease_s)
    for kind, key in (("deadline", "deadline"), ("lease_expired", "lost_worker"), ("message_lost", "lost_message"),
                      ("message_lost_in_transit", "lost_in_transit"), ("lost_limit", "gave_up")):
        metrics.reaper_recovered(kind, done[key])
    if any(done.values()):
        log.info("reaper %s", " ".join(f"{k}={v}" for k, v in done.items()))
    return done


def _queues_of(job) -> set[str]:
    """Every queue the message of ``job``'s step can be on (generate: either kind at its priority)."""
    queues = {routing.step_queue(Step(job.step), job.priority, job.provider)}
    if Step(job.step) is Step.GENERATE:
        queues.update(routing.priority_queues(job.priority))
    return queues


def lost_in_transit(marked: list, now: datetime, lease_s: float) -> list:
    """Of unleased jobs whose marker is set, those whose message can no longer be waiting (rule 4)."""
    waited = now - timedelta(seconds=UNCLAIMED_LEASES * lease_s)
    suspects = [job for job in marked if job.updated_at < waited]
    if not suspects:
        return []
    pipe = events.client().pipeline(transaction=False)
    for job in suspects:
        pipe.ttl(dispatch.marker_key(job))
    # A plain message's marker outlives the deadline by PAST_DEADLINE_S; half of it allows for clock and rounding.
    plain = [job for job, ttl in zip(suspects, pipe.execute())
             if ttl > budget.remaining_s(job.deadline_at, now) + dispatch.PAST_DEADLINE_S / 2]
    if not plain:
        return []
    try:
        depths = broker.queue_depths(current_app.extensions["celery"], routing.ALL_QUEUES)
    except (BrokerError, RedisError, OSError) as exc:
        # Unknown depths prove nothing lost: the next pass looks again.
        log.warning("queue depths unread error=%s", exc.__class__.__name__)
        return []
    return [job for job in plain if not any(depths.get(queue, 0) for queue in _queues_of(job))]


def _send_lost_in_transit(marked: list, now: datetime, lease_s: float) -> int:
    sent = 0
    for job in lost_in_transit(marked, now, lease_s):
        # Only the row as read (unleased, unchanged): a claim or any move since wins.
        moved = jobs.record(job.id, None, where=(Job.lease_until.is_(None), Job.updated_at == job.updated_at),
                            step_outputs=dispatch.with_new_token(job.step_outputs))
        if moved:
            log.warning("message lost in transit job_id=%s step=%s status=%s waited_s=%.0f", job.id, job.step,
                        job.status, (now - job.updated_at).total_seconds())
            dispatch.send_step(moved.job, Step(job.step))
            sent += 1
    return sent
