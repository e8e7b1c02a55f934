"""Losing a message for real: the test's own Redis refuses to queue one."""
from __future__ import annotations

from contextlib import contextmanager

import redis


@contextmanager
def sends_refused(redis_url: str):
    """While inside, that Redis refuses LPUSH (how kombu queues a message) to the default user.

    Every other command still works: markers, events, locks and the results of
    running tasks; only the messages sent meanwhile are lost (their send fails).
    """
    client = redis.Redis.from_url(redis_url)
    client.execute_command("ACL", "SETUSER", "default", "-lpush")
    try:
        yield
    finally:
        client.execute_command("ACL", "SETUSER", "default", "+lpush")
