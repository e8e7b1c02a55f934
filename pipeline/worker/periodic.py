"""One pass at a time of each periodic task, whoever started it.

Beat (one active lock holder, ``pipeline.worker.beat``) sends each periodic task once
per interval, but a pass that runs longer than its interval would otherwise
overlap the next one on another worker process. Each pass therefore holds a
Redis lock (redis-py's ``Lock``) of its own name and a pass that finds it held
is skipped. The lock expires after ``timeout`` seconds, so a pass whose process
was SIGKILLed holds back the next ones only that long.

Overlap would not corrupt anything (every move of the reaper is a
compare-and-set, retention deletes only terminal jobs, each webhook send claims
its delivery row); the lock saves the duplicate work and keeps the promise.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager

from redis.exceptions import LockError, RedisError

from pipeline.adapters import events

log = logging.getLogger("genline.periodic")

KEY = "genline:periodic:{}"


@contextmanager
def alone(name: str, timeout: float):
    """Yield True while this process holds ``name``'s pass lock, False (skip the pass) when another does."""
    try:
        lock = events.client().lock(KEY.format(name), timeout=timeout, blocking=False)
        held = lock.acquire()
    except RedisError as exc:
        # Redis is the broker too: a pass that got here finds it back soon; skip this one.
        log.warning("periodic pass skipped task=%s error=%s", name, exc.__class__.__name__)
        yield False
        return
    if not held:
        log.info("periodic pass skipped task=%s reason=another-pass-running", name)
        yield False
        return
    try:
        yield True
    finally:
        try:
            lock.release()
        except (LockError, RedisError):
            pass  # expired meanwhile (a pass longer than its timeout), or Redis is gone: nothing to free
