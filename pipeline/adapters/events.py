"""Live event fan-out over Redis pub/sub: the fast path beside the event log.

The log in the database is authoritative. A publish that fails is logged and
dropped: listeners re-read the log, so they miss nothing, only see it later.
"""
from __future__ import annotations

import json
import logging

import redis

from pipeline.adapters import redisurl

log = logging.getLogger("genline.events")

CHANNEL = "genline:events"

_clients: dict[str, redis.Redis] = {}
_url: str | None = None


def configure(redis_url: str) -> None:
    """Point the publisher at a Redis; called by the app factory."""
    global _url
    _url = redis_url
    _for(redis_url)


def _for(url: str) -> redis.Redis:
    found = _clients.get(url)
    if found is None:
        found = _clients[url] = redisurl.client(url, socket_timeout=2, socket_connect_timeout=2)
    return found


def _current_url() -> str | None:
    # The Redis of the Flask app in context: a process may hold several apps
    # (the tests run stacks side by side); otherwise the one last configured.
    try:
        from flask import current_app
        return current_app.extensions["genline.config"].redis_url
    except (RuntimeError, KeyError):
        return _url


def client() -> redis.Redis:
    url = _current_url()
    if url is None:
        raise RuntimeError("pipeline.adapters.events.configure() was not called")
    return _for(url)


def publish(job_id: str, event: dict) -> None:
    """Publish one event of a job to every live listener."""
    url = _current_url()
    if url is None:
        return
    try:
        _for(url).publish(CHANNEL, _encode(event))
    except redis.RedisError as exc:
        log.warning("event publish failed job_id=%s seq=%s error=%s", job_id, event.get("id"), exc)


def publish_on(pipe, event: dict) -> None:
    """Queue the publish of ``event`` on the caller's pipeline of ``client()``.

    For a caller with its own command to send at the same moment (one round
    trip for both); it runs ``pipe.execute()`` and logs a failure as ``publish`` does.
    """
    pipe.publish(CHANNEL, _encode(event))


def _encode(event: dict) -> str:
    return json.dumps(event, separators=(",", ":"))
