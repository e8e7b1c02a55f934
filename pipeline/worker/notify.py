"""The notify step: runs once a job is terminal and hands its event to webhooks.

Non-terminal events go to webhooks as they are published (``pipeline.adapters.publish``).
"""
from __future__ import annotations

import logging

from pipeline.adapters import webhooks
from pipeline.adapters.publish import send_webhook
from pipeline.core.lifecycle import TERMINAL_EVENTS, is_terminal
from pipeline.store import jobs

log = logging.getLogger("genline.notify")


def notify_terminal(job_id: str) -> None:
    """Send the terminal event of a job to its webhook, if it subscribed to it."""
    job = jobs.get(job_id)
    if job is None or not is_terminal(job.status):
        return
    if not job.webhook:
        log.info("notify job_id=%s step=notify status=%s webhook=False", job_id, job.status)
        return
    last = jobs.events_after(job_id, job.event_seq - 1, limit=1)
    event = last[0] if last else None
    wanted = event is not None and event["type"] in TERMINAL_EVENTS and webhooks.wants(job.webhook, event["type"])
    log.info("notify job_id=%s step=notify status=%s webhook=%s", job_id, job.status, wanted)
    if wanted:
        send_webhook(job_id, event["id"], queue=job.priority or "normal")
