"""Failing a job: the one place a step, the failover and the reaper end a job as ``failed``."""
from __future__ import annotations

import logging

from pipeline.adapters import dispatch, metrics
from pipeline.core.errors import GenlineError
from pipeline.core.lifecycle import JobStatus, Step
from pipeline.store import jobs
from pipeline.store.models import utcnow

log = logging.getLogger("genline.steps")


def fail(job, step: Step, error: GenlineError, where: tuple = (), owner: str | None = None) -> bool:
    """Move the job to ``failed`` with ``error`` and send notify; False if it had moved on.

    ``owner``: only while it holds the job's lease; ``where``: more conditions (SQL).
    """
    body = error.as_dict(step.value)
    done = jobs.transition(job.id, JobStatus.FAILED, where=where, owner=owner, error=body, data={"error": body})
    if done:
        log.info("job failed job_id=%s step=%s attempt=%s status=failed error=%s", job.id, step.value, job.attempt,
                 error.code)
        metrics.job_finished(JobStatus.FAILED.value, error.code, job.operation,
                             jobs.seconds_between(job.created_at, utcnow()), job.tenant_id)
        dispatch.send_step(job, Step.NOTIFY)
    return done
