"""Sending step messages. The chain is driven by the job row: each step, once its
output is recorded, sends the next, so any step can be sent again from the row
alone (by a retry, a resume or the reaper) with time limits computed at that
moment rather than fixed when the job was submitted.

Each send also sets a marker in Redis that lives as long as the message may
wait; the reaper treats an active job with neither a marker nor a live lease as
one whose message was lost (a Redis restart loses both together).

A marker names the message it stands for: every move that calls for a new
message (a step's end, a retry, a failover, a resume, a lost worker) stores a
fresh dispatch token on the row (``step_outputs["dispatch"]``, in the move's
own compare-and-set), and the marker's key carries it. So a marker left by an
earlier message never covers a later one whose send failed or was lost: the
reaper looks only for the marker of the token the row holds. A job's first
message has no token (its marker is ``genline:inflight:<id>``).
"""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from kombu.exceptions import OperationalError as BrokerError
from redis import RedisError

from pipeline.adapters import events, routing
from pipeline.core import budget
from pipeline.core.lifecycle import Step
from pipeline.core.runstate import DISPATCH, RunState
from pipeline.store.models import utcnow

log = logging.getLogger("genline.dispatch")

TASK_NAMES = {
    Step.VALIDATE: "genline.validate",
    Step.GENERATE: "genline.generate",
    Step.UPLOAD: "genline.upload",
    Step.NOTIFY: "genline.notify",
}
MARKER = "genline:inflight:{}"
TOKEN = DISPATCH
"""Key of the dispatch token in ``step_outputs``."""
ETA_MARGIN_S = 10.0
"""Seconds past a countdown message's ETA before the reaper may consider it lost."""
PAST_DEADLINE_S = 60
"""Seconds a plain message's marker outlives the job's deadline: only it does (a reaper
test tells a plain message's marker from the short ones of countdown and parked jobs)."""


def token_of(job) -> str | None:
    """The dispatch token the row (or snapshot) holds: which message it waits for."""
    return RunState.of(job).dispatch


def marker_key(job) -> str:
    """Redis key of the in-flight marker of the message ``job`` waits for."""
    token = token_of(job)
    return MARKER.format(job.id) + (f":{token}" if token else "")


def with_new_token(step_outputs: dict | None) -> dict:
    """A copy of ``step_outputs`` with a fresh dispatch token, for a move that sends a new message.

    The caller writes it in the move's compare-and-set and sends with a snapshot holding it.
    """
    return RunState.from_outputs(step_outputs).with_new_token().into(step_outputs)


def step_options(job, step: Step, countdown: float = 0.0) -> dict:
    """apply_async options of a step message: queue, and time limits for generate."""
    options = {"queue": routing.step_queue(step, getattr(job, "priority", None), getattr(job, "provider", None))}
    if countdown > 0:
        options["countdown"] = countdown
    if Step(step) is Step.GENERATE:
        start = utcnow() + timedelta(seconds=countdown)
        soft, hard = budget.attempt_limits(job.timeout_s, job.deadline_at, start)
        options.update(soft_time_limit=soft, time_limit=hard)
    return options


def send_step(job, step: Step, countdown: float = 0.0, publish: tuple | list = ()) -> bool:
    """Send the message of ``step`` for ``job`` (a snapshot). False if the broker is down.

    ``publish``: committed events of the job still to publish; they go out with
    the in-flight marker, in one round trip to Redis (on their own if the send fails).
    """
    step = Step(step)
    try:
        # The Celery app of *this* Flask app: celery.current_app is process-global
        # and would be whichever app was made last.
        result = current_app.extensions["celery"].send_task(TASK_NAMES[step], args=[job.id], **step_options(job, step, countdown))
    except (BrokerError, RedisError, OSError) as exc:
        log.warning("dispatch failed job_id=%s step=%s error=%s", job.id, step.value, exc)
        for event in publish:
            events.publish(job.id, event)
        return False
    mark_inflight(job, countdown, publish)
    log.debug("dispatched job_id=%s step=%s task_id=%s", job.id, step.value, result.id)
    return True


PRIMARY_KEY = "genline:primary"
"""Redis key: the ``run_id`` of the Redis server the in-flight markers were written to."""


def forget_markers_of_another_primary(client) -> int:
    """Delete every in-flight marker when the Redis answering is not the one that wrote them; returns how many.

    A Redis restarted empty loses markers and messages together. A failover
    (Sentinel promoting a replica, a managed Redis switching nodes) or a restart
    from its persistence files does not: a marker can outlive its message,
    which was fetched by a worker that lost its connection (kombu's unacked
    copy comes back only after the visibility timeout) or not yet replicated.
    The reaper would trust such a marker until the job's deadline. So once the
    server's ``run_id`` differs from the one recorded, no marker is trusted:
    the reaper sends every unleased job again, and a message that did survive
    is dropped by the step's claim (compare-and-set).
    """
    run_id = client.info("server").get("run_id")
    if not run_id:
        return 0  # a Redis that does not tell: markers are trusted as before
    seen = client.get(PRIMARY_KEY)
    if seen is not None and seen.decode() == run_id:
        return 0
    forgotten = 0
    if seen is not None:
        batch: list = []
        for key in client.scan_iter(match=MARKER.format("*"), count=1000):
            batch.append(key)
            if len(batch) == 1000:  # one DEL per batch, not a round trip per marker
                forgotten += client.delete(*batch)
                batch.clear()
        if batch:
            forgotten += client.delete(*batch)
        log.warning("redis primary changed run_id=%s markers_forgotten=%s", run_id, forgotten)
    client.set(PRIMARY_KEY, run_id)
    return forgotten


def marker_ttl_s(job, countdown: float, lease_s: float) -> int:
    """How long the in-flight marker of a message lives.

    A plain message waits in a Redis list, which a Redis restart loses together
    with the marker, so the marker may live until the deadline. A countdown (ETA)
    message is reserved at once by a worker and held in its memory; if that whole
    worker dies, Redis hands the message out again only after its visibility
    timeout (an hour). So its marker lives only until the ETA plus a margin: once
    it expires with no lease taken, the reaper sends the step again (a duplicate
    of a message that was only late is dropped by the claim's compare-and-set).
    """
    if countdown > 0:
        return max(5, int(countdown + max(ETA_MARGIN_S, 2 * lease_s)))
    return max(5, int(budget.remaining_s(job.deadline_at, utcnow()) + PAST_DEADLINE_S))


def mark_inflight(job, countdown: float = 0.0, publish: tuple | list = ()) -> None:
    """Note that a message for this job is on its way (see the module docstring).

    ``publish``: events of the job to publish in the same round trip.
    """
    ttl = marker_ttl_s(job, countdown, current_app.extensions["genline.config"].lease_s)
    try:
        if publish:
            pipe = events.client().pipeline(transaction=False)
            pipe.set(marker_key(job), "1", ex=ttl)
            for event in publish:
                events.publish_on(pipe, event)
            results = pipe.execute(raise_on_error=False)
        else:
            results = [events.client().set(marker_key(job), "1", ex=ttl)]
    except (RedisError, RuntimeError) as exc:
        results = [exc] * (1 + len(publish))
    if isinstance(results[0], Exception):
        log.warning("inflight marker not set job_id=%s error=%s", job.id, results[0])
    for event, result in zip(publish, results[1:]):
        if isinstance(result, Exception):
            log.warning("event publish failed job_id=%s seq=%s error=%s", job.id, event.get("id"), result)
