"""The Celery tasks of webhook delivery: one attempt per message, retries from the delivery log.

A short backoff is sent as a countdown message. A long one (hours) is not: with
the Redis broker a message waiting past the visibility timeout is delivered
twice, so those retries are left in ``webhook_deliveries.next_attempt_at`` and
the beat sweep sends them when due. Both paths claim the row before sending, so
a retry runs once.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from flask import current_app
from sqlalchemy import Text, cast, select

from pipeline.adapters import tracing, webhooks
from pipeline.adapters.publish import WEBHOOK_TASK as TASK
from pipeline.adapters.publish import send_webhook as send
from pipeline.core.lifecycle import TERMINAL_EVENTS, TERMINAL_STATUSES
from pipeline.store import jobs
from pipeline.store.models import Job, WebhookDelivery, db, utcnow
from pipeline.worker.periodic import alone

log = logging.getLogger("genline.webhooks")

COUNTDOWN_MAX_S = 300
"""Retries due sooner than this go out as countdown messages; later ones wait for the sweep."""
SWEEP_BATCH = 200
SWEEP_LOCK_S = 120
"""A sweep pass holds its lock at most this long (beat sends one every 30 s)."""
LOST_FIRST_SETTLE_S = 20
"""A terminal event with no delivery this long after the job ended lost its message; the sweep sends it."""
LOST_FIRST_WINDOW_S = 3600
"""How far back the sweep looks for those: jobs ended longer ago are left alone."""


@shared_task(name=TASK, bind=True)
def deliver(self, job_id: str, seq: int, previous_id: int | None = None, fresh: bool = False) -> None:
    """One delivery attempt of event ``seq`` of a job; schedules the next on failure."""
    cfg = current_app.extensions["genline.config"]
    with tracing.span("webhook.deliver", job_id=job_id, event_seq=seq):
        row, delay = webhooks.attempt(job_id, seq, cfg, previous_id=previous_id, fresh=fresh)
    if row is not None and delay is not None and delay <= COUNTDOWN_MAX_S:
        send(job_id, seq, previous_id=row.id, countdown=delay)


@shared_task(name="genline.webhook_sweep")
def sweep() -> int:
    """Send every retry that is due (run by beat), one pass at a time; returns how many were sent."""
    with alone("webhook_sweep", SWEEP_LOCK_S) as mine:
        return _sweep() if mine else 0


def _sweep() -> int:
    return _send_due() + _send_lost_first()


def _send_due() -> int:
    due = db.session.execute(
        select(WebhookDelivery.id, WebhookDelivery.job_id, WebhookDelivery.event_seq)
        .where(WebhookDelivery.next_attempt_at.is_not(None), WebhookDelivery.next_attempt_at <= utcnow(),
               WebhookDelivery.delivered.is_(False))
        .order_by(WebhookDelivery.next_attempt_at).limit(SWEEP_BATCH)
    ).all()
    db.session.rollback()
    sent = sum(send(job_id, seq, previous_id=row_id) for row_id, job_id, seq in due)
    if sent:
        log.info("webhook sweep sent=%s", sent)
    return sent


def _send_lost_first() -> int:
    """Send the terminal event of recently ended jobs that have no delivery of it at all.

    The notify step's message to deliver it, or the notify step's own message,
    can be lost (Redis restarted empty, or a primary that failed over before
    replicating it); the job is terminal, so the reaper no longer looks at it.
    A first attempt that raced this one is skipped (``webhooks.attempt``).
    """
    now = utcnow()
    delivered = select(WebhookDelivery.id).where(WebhookDelivery.job_id == Job.id,
                                                 WebhookDelivery.event_seq == Job.event_seq)
    rows = db.session.execute(
        select(Job.id, Job.event_seq)
        # A job without a webhook holds SQL NULL or JSON null, depending on how it was written.
        .where(Job.status.in_(TERMINAL_STATUSES), Job.webhook.is_not(None), cast(Job.webhook, Text) != "null",
               Job.completed_at <= now - timedelta(seconds=LOST_FIRST_SETTLE_S),
               Job.completed_at > now - timedelta(seconds=LOST_FIRST_WINDOW_S), ~delivered.exists())
        .order_by(Job.completed_at.desc()).limit(SWEEP_BATCH)
    ).all()
    db.session.rollback()
    lost = [(job_id, seq) for job_id, seq in rows if _terminal_event_wanted(job_id, seq)]
    sent = sum(send(job_id, seq) for job_id, seq in lost)
    if sent:
        log.info("webhook sweep sent_lost_first=%s", sent)
    return sent


def _terminal_event_wanted(job_id: str, seq: int) -> bool:
    job, found = jobs.get(job_id), jobs.events_after(job_id, seq - 1, limit=1)
    return (job is not None and bool(found) and found[0]["type"] in TERMINAL_EVENTS
            and webhooks.wants(job.webhook, found[0]["type"]))
