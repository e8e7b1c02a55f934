"""Holding a response until a job is terminal (``?wait=N``, ``Prefer: wait=N``)."""
from __future__ import annotations

import time

from pipeline import jobs
from pipeline.lifecycle import is_terminal

POLL_S = 0.1


def until_terminal(job_id: str, seconds: float):
    """The job once terminal, or as it is after ``seconds``."""
    end = time.monotonic() + seconds
    while True:
        job = jobs.get(job_id)
        if job is None or is_terminal(job.status) or time.monotonic() >= end:
            return job
        time.sleep(min(POLL_S, max(0.0, end - time.monotonic())))
