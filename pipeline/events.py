"""Live event fan-out over Redis pub/sub: the fast path beside the event log.

The log in the database is authoritative. A publish that fails is logged and
dropped: listeners re-read the log, so they miss nothing, only see it later.
"""
from __future__ import annotations

import json
import logging

import redis

log = logging.getLogger("genline.events")

CHANNEL = "genline:events"

_client: redis.Redis | None = None
_url: str | None = None


def configure(redis_url: str) -> None:
    """Point the publisher at a Redis; called by the app factory."""
    global _client, _url
    if redis_url != _url:
        _url = redis_url
        _client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)


def client() -> redis.Redis:
    if _client is None:
        raise RuntimeError("pipeline.events.configure() was not called")
    return _client


def publish(job_id: str, event: dict) -> None:
    """Publish one event of a job to every live listener."""
    if _client is None:
        return
    try:
        _client.publish(CHANNEL, json.dumps(event, separators=(",", ":")))
    except redis.RedisError as exc:
        log.warning("event publish failed job_id=%s seq=%s error=%s", job_id, event.get("id"), exc)
