"""A worker that waits out a full or read-only Redis instead of exiting.

Redis at ``maxmemory`` with ``noeviction`` (or a read-only replica after a
failover) still answers reads, so connections look healthy, but every write is
refused. kombu's Redis channel writes on each delivery (the unacked index) and
each ack; Celery took the refusal for an unrecoverable error and the worker
exited ("Unrecoverable error: OutOfMemoryError").

Two public hooks make it wait and resume:
- ``pipeline.adapters.broker.Transport.connection_errors`` includes the refusals, so a
  refused ack or delivery restarts the consumer as a lost connection would;
- ``BrokerGuard``, a consumer bootstep, probes a write every ``PROBE_S`` and,
  while writes are refused, stops consuming (``Consumer.cancel_task_queue``,
  so no message is taken off a queue it could not record), then resumes the
  same queues (``Consumer.add_task_queue``) once a write succeeds.
- An ack refused meanwhile leaves its delivery counted against the prefetch
  limit forever (kombu logs "Couldn't ack"): once writes are accepted and no
  task runs but the channel will take no more, the guard raises a connection
  error from its timer, which the consumer handles as a lost connection
  (Celery's event loop propagates ``connection_errors`` from timers): it
  reconnects, and the unacknowledged message is restored to its queue.
"""
from __future__ import annotations

import logging

from celery import bootsteps
from celery.worker import state
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError

from pipeline.adapters import events

log = logging.getLogger("genline.brokerguard")

PROBE_S = 1.0
PROBE_KEY = "genline:write-probe"
REFUSALS = (OutOfMemoryError, ReadOnlyError)
"""Redis answers that mean "up, but refusing writes"."""


def probe_write(client) -> None:
    """One small write with a short TTL; raises the client's error when Redis refuses writes."""
    client.set(PROBE_KEY, "1", ex=30)


class BrokerGuard(bootsteps.StartStopStep):
    """Pause consuming while Redis refuses writes; resume when it accepts them again."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.paused: list[str] = []
        self.tref = None

    def start(self, c):
        self.paused = []
        self.tref = c.timer.call_repeatedly(PROBE_S, self.probe, (c,), priority=10)

    def stop(self, c):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def probe(self, c) -> None:
        try:
            probe_write(events.client())
        except REFUSALS as exc:
            self._pause(c, exc)
            return
        except RedisError:
            return  # down, not full: the consumer's own reconnect handles it
        self._resume(c)
        if self._stuck(c):
            log.warning("deliveries whose ack was refused hold the prefetch limit: reconnecting to restore them")
            raise RedisConnectionError("reconnecting to restore deliveries whose ack the broker refused")

    @staticmethod
    def _stuck(c) -> bool:
        """True when no task runs or waits, yet the channel takes no more messages (refused acks hold the slots).

        A received task waiting for a pool process (``reserved_requests``, say while the
        pool replaces a process Celery terminated on a lost connection) holds its slot
        rightly: reconnecting then would restore its message while the worker still holds it.
        """
        channel = getattr(c.task_consumer, "channel", None)
        return channel is not None and not state.reserved_requests and not channel.qos.can_consume()

    def _pause(self, c, exc) -> None:
        if self.paused or c.task_consumer is None:
            return
        self.paused = [q.name for q in c.task_consumer.queues]
        log.warning("broker refuses writes, pausing consumption queues=%s error=%s", ",".join(self.paused),
                    exc.__class__.__name__)
        for name in self.paused:
            c.cancel_task_queue(name)

    def _resume(self, c) -> None:
        if not self.paused:
            return
        log.warning("broker accepts writes again, resuming queues=%s", ",".join(self.paused))
        for name in self.paused:
            c.add_task_queue(name)
        self.paused = []
