"""The notify step: runs once a job is terminal and hands its event to webhooks."""
from __future__ import annotations

import logging

from pipeline.adapters import webhooks
from pipeline.core.lifecycle import TERMINAL_EVENTS
from pipeline.store import jobs

log = logging.getLogger("genline.notify")


def notify_terminal(job_id: str) -> None:
    """Send the terminal event of a job to its webhook, if it subscribed to it."""
    job = jobs.get(job_id)
    if job is None or job.status not in ("completed", "failed", "canceled"):
        return
    if not job.webhook:
        log.info("notify job_id=%s step=notify status=%s webhook=False", job_id, job.status)
        return
    last = jobs.events_after(job_id, job.event_seq - 1, limit=1)
    event = last[0] if last else None
    wanted = event is not None and event["type"] in TERMINAL_EVENTS and webhooks.wants(job.webhook, event["type"])
    log.info("notify job_id=%s step=notify status=%s webhook=%s", job_id, job.status, wanted)
    if wanted:
        from pipeline.worker.webhook_tasks import send
        send(job_id, event["id"], queue=job.priority or "normal")


def on_event(job_id: str, webhook: dict | None, event: dict, priority: str = "normal") -> None:
    """A non-terminal event a webhook subscribed to (``started``, ``progress``…): send it now.

    Terminal events go through the notify step instead, after the job's final write.
    """
    if event["type"] in TERMINAL_EVENTS or not webhooks.wants(webhook, event["type"]):
        return
    from pipeline.worker.webhook_tasks import send
    send(job_id, event["id"], queue=priority)
