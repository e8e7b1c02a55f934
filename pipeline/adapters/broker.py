"""The Redis broker transport genline's Celery app uses: kombu's, with one client reused.

kombu's Redis channel makes a new ``redis.Redis`` client object for every
message it publishes (``Channel.conn_or_acquire``). With redis-py 8 building
one costs about 0.4 ms of Python, twice per step message (the message and its
``task-sent`` event), in the web for every submission and in the worker for
every step. The client only wraps the channel's connection pool, and a
channel is used by one thread at a time, so this one keeps it for the
channel's life (a new pool, after a fork or reconnect, gets a new client).
"""
from __future__ import annotations

import logging

from kombu.transport import redis as kombu_redis
from redis.exceptions import OutOfMemoryError, ReadOnlyError

log = logging.getLogger("genline.broker")


class Channel(kombu_redis.Channel):
    _sync_client = None

    def close(self):
        """Close the channel; never let a connection kombu already released end the worker.

        After Redis restarts, Celery's consumer closes its connection; kombu's
        channel close then restores unacked messages through a connection
        whose client it has already dropped and raises AttributeError
        (celery/kombu#582, #970), which Celery's consumer treats as an
        unrecoverable error: the whole worker exits. The messages it would
        restore went with the restarted Redis anyway, and genline's reaper
        sends every job whose message is lost, so the worker goes on and
        reconnects instead.
        """
        try:
            super().close()
        except AttributeError as exc:
            log.warning("broker channel closed without restoring unacked messages error=%r", exc)

    def _create_client(self, asynchronous=False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
    # A full (maxmemory, noeviction) or read-only Redis refuses writes: a lost
    # connection for the consumer, which restarts and waits, never an exit
    # (see pipeline.worker.brokerguard).
    connection_errors = kombu_redis.Transport.connection_errors + (OutOfMemoryError, ReadOnlyError)
