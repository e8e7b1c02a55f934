"""Holding a response until a job is terminal (``?wait=N``, ``Prefer: wait=N``).

The request waits on the process's event hub, not on the database: it reads
the row once after subscribing, then again only when a terminal event arrives
(or the listener resynced, or a quiet ``RECHECK_S`` passed, in case a publish
was lost). Under gevent a held request is a parked greenlet.
"""
from __future__ import annotations

import time

from pipeline.core.lifecycle import TERMINAL_EVENTS, is_terminal
from pipeline.store import jobs
from web import hub

RECHECK_S = 5.0
"""Re-read the row this often even without news: pub/sub is only the fast path."""
POLL_S = 0.5
"""How often to read the row while the hub has no Redis subscription."""


def until_terminal(job_id: str, seconds: float):
    """The job once terminal, or as it is after ``seconds``."""
    end = time.monotonic() + seconds
    with hub.current().subscribe(job_id) as sub:
        while True:
            job = jobs.get(job_id)
            left = end - time.monotonic()
            if job is None or is_terminal(job.status) or left <= 0:
                return job
            _wait_for_news(sub, min(left, RECHECK_S if sub.live else POLL_S))


def _wait_for_news(sub, seconds: float) -> None:
    """Return when a terminal event (or a resync) arrives, or after ``seconds``."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        event = sub.get(left)
        if event is None or event.get("type") in TERMINAL_EVENTS or event is hub.RESYNC:
            return
