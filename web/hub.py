"""One Redis subscription per web process, fanned out to in-process waiters.

Every SSE stream and long-poll of a process registers here for one job id; a
single listener thread (a greenlet under gunicorn's gevent workers, a real
thread under the Flask test client) reads ``genline:events`` and hands each
message to the waiters of its job. So 500 open streams cost 500 queues, not
500 Redis connections.

Pub/sub is only the fast path. A waiter that sees a gap in ``seq``, a
``RESYNC`` (the listener reconnected and may have missed messages), or nothing
for a while re-reads the job's event log, which is authoritative.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time

import redis

from pipeline.adapters import redisurl
from pipeline.adapters.events import CHANNEL

log = logging.getLogger("genline.hub")

RESYNC = {"type": "_resync"}
"""Put in every waiter's queue when the listener (re)connects: re-read the log."""

QUEUE_SIZE = 1000
"""Events buffered per waiter; beyond it events are dropped and the seq gap makes the waiter re-read the log."""


class Subscription:
    """One waiter's view of one job's live events. Use as a context manager."""

    def __init__(self, hub: Hub, job_id: str):
        self.hub, self.job_id = hub, job_id
        self.queue: queue.Queue = queue.Queue(QUEUE_SIZE)

    def get(self, timeout: float) -> dict | None:
        """The next live event (or ``RESYNC``), or None after ``timeout`` seconds."""
        try:
            return self.queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    @property
    def live(self) -> bool:
        """True while the listener holds its subscription (otherwise poll the log)."""
        return self.hub.connected.is_set()

    def _put(self, item: dict) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            pass  # the consumer sees the seq gap (or its idle timeout) and re-reads the log

    def close(self) -> None:
        self.hub._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Hub:
    """The per-process listener; started on first use, restarted after a fork."""

    def __init__(self, redis_url: str, connect_wait_s: float = 2.0):
        self.redis_url = redis_url
        self.connect_wait_s = connect_wait_s
        self.connected = threading.Event()
        self._waiters: dict[str, set[Subscription]] = {}
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()
        self.received = 0

    def subscribe(self, job_id: str) -> Subscription:
        """Register for ``job_id``'s live events; waits briefly for the listener to be subscribed.

        Read the event log only after this returns: everything published from
        now on reaches the subscription, everything before is in the log.
        """
        self._ensure_running()
        sub = Subscription(self, job_id)
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(sub)
        self.connected.wait(self.connect_wait_s)
        return sub

    def waiting(self) -> int:
        """How many subscriptions are open (for tests and metrics)."""
        with self._lock:
            return sum(len(s) for s in self._waiters.values())

    def stop(self) -> None:
        self._stop.set()

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._waiters.get(sub.job_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._waiters[sub.job_id]

    def _ensure_running(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._lock:
            if self._pid == pid:
                return
            # A forked child (a gunicorn worker) inherits no running thread: start its own.
            self._pid = pid
            self._waiters = {}
            self.connected.clear()
            thread = threading.Thread(target=self._run, name="genline-hub", daemon=True)
            thread.start()

    def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            pubsub = None
            try:
                client = redisurl.client(self.redis_url, socket_connect_timeout=2, health_check_interval=15)
                pubsub = client.pubsub()
                pubsub.subscribe(CHANNEL)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message.get("type") == "message":
                        self._dispatch(message["data"])
                    elif message.get("type") == "subscribe":
                        # The server confirmed (also after redis-py reconnected on its own):
                        # from here on every publish reaches us.
                        self._connected()
                        delay = 0.1
            except (redis.RedisError, OSError, ValueError) as exc:
                if self.connected.is_set():
                    log.warning("event listener lost redis error=%s", exc)
                self.connected.clear()
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001 - closing a dead connection
                        pass

    def _connected(self) -> None:
        self.connected.set()
        log.info("event listener subscribed channel=%s pid=%s", CHANNEL, os.getpid())
        # Anything published while we were not subscribed is only in the log.
        with self._lock:
            subs = [s for group in self._waiters.values() for s in group]
        for sub in subs:
            sub._put(RESYNC)

    def _dispatch(self, raw: bytes) -> None:
        if not self._waiters:
            # Every event of every job reaches every web process: with no stream or
            # long-poll open here (a worker drain, a quiet API), skip decoding it.
            self.received += 1
            return
        try:
            event = json.loads(raw)
            job_id = event["job_id"]
        except (ValueError, KeyError, TypeError):
            log.warning("event listener dropped a malformed message")
            return
        self.received += 1
        with self._lock:
            subs = list(self._waiters.get(job_id, ()))
        for sub in subs:
            sub._put(event)


_hubs: dict[str, Hub] = {}
_hubs_lock = threading.Lock()


def hub_for(redis_url: str) -> Hub:
    """The process's hub for one Redis (tests run several stacks in one process)."""
    with _hubs_lock:
        hub = _hubs.get(redis_url)
        if hub is None:
            hub = _hubs[redis_url] = Hub(redis_url)
        return hub


def current() -> Hub:
    """The hub of the current Flask app's Redis."""
    from flask import current_app
    return hub_for(current_app.extensions["genline.config"].redis_url)
