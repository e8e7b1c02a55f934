"""Publishing what the job store wrote: the events to Redis pub/sub, and to a webhook.

The store returns each committed event (``pipeline.store.jobs.Written``); the
application installs ``events.publish`` and ``to_webhook`` as the store's
publishers (``pipeline.app``), so the store itself imports nothing above it.

Webhooks get the non-terminal events they subscribed to (``started``,
``progress``, ``retry``) at once; terminal events go through the notify step
(``pipeline.worker.notify``), after the job's final write.
"""
from __future__ import annotations

import logging

from flask import current_app
from kombu.exceptions import OperationalError as BrokerError
from redis import RedisError

from pipeline.adapters import routing, webhooks
from pipeline.core.lifecycle import TERMINAL_EVENTS

log = logging.getLogger("genline.webhooks")

WEBHOOK_TASK = "genline.webhook"
"""The Celery task delivering one event to a webhook (``pipeline.worker.webhook_tasks.deliver``)."""


def to_webhook(job_id: str, event: dict, webhook: dict, priority: str = "normal") -> None:
    """Send a committed event to the job's webhook if it subscribed to it and it is not terminal."""
    if event["type"] not in TERMINAL_EVENTS and webhooks.wants(webhook, event["type"]):
        send_webhook(job_id, event["id"], queue=priority)


def send_webhook(job_id: str, seq: int, previous_id: int | None = None, fresh: bool = False,
                 countdown: float = 0.0, queue: str = "normal") -> bool:
    """Send the delivery message of one event; False if the broker is down (the sweep retries)."""
    options: dict = {"queue": routing.io_queue(queue)}  # ``queue``: the job's priority
    if countdown > 0:
        options["countdown"] = countdown
    try:
        # The Celery app of this Flask app (celery.current_app is process-global).
        current_app.extensions["celery"].send_task(WEBHOOK_TASK, args=[job_id, seq, previous_id, fresh], **options)
    except (BrokerError, RedisError, OSError) as exc:
        log.warning("webhook dispatch failed job_id=%s seq=%s error=%s", job_id, seq, exc)
        return False
    return True
