"""The Redis broker transport genline's Celery app uses: kombu's, through public hooks only.

Celery names it with ``broker_transport`` (kombu's documented way to plug a
transport class). It changes two documented things of kombu's Redis transport (and of its
Sentinel transport, for a ``sentinel://`` ``REDIS_URL``):
``Transport.connection_errors`` (a full or read-only Redis is a lost connection,
see ``pipeline.worker.brokerguard``) and ``Channel.close`` (guarded, below).

Earlier it also overrode kombu's private ``Channel._create_client`` to reuse one
``redis.Redis`` object per channel instead of one per publish. Measured with
redis-py 8.2 and kombu 5.7 (``docs/performance.md``), that saved about 0.06 ms of
a 0.5 ms ``send_task``, a few hundredths of a millisecond per step message: not
worth a private override, so it is gone.
"""
from __future__ import annotations

import logging

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from redis.exceptions import OutOfMemoryError, ReadOnlyError

log = logging.getLogger("genline.broker")


class _GuardedClose:
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


class Channel(_GuardedClose, kombu_redis.Channel):
    """kombu's Redis channel, closed without ending the worker."""


class SentinelChannel(_GuardedClose, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel (it asks the sentinels for the primary on each connect), closed the same way."""


# A full (maxmemory, noeviction) or read-only Redis refuses writes: a lost
# connection for the consumer, which restarts and waits, never an exit
# (see pipeline.worker.brokerguard). A demoted primary answers READONLY too.
CONNECTION_ERRORS = kombu_redis.Transport.connection_errors + (OutOfMemoryError, ReadOnlyError)


class Transport(kombu_redis.Transport):
    Channel = Channel
    connection_errors = CONNECTION_ERRORS


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel
    connection_errors = CONNECTION_ERRORS


# kombu re-reads the transport from the URL's scheme when it moves to the next
# broker URL after a failed connect (``Connection.switch``): with Sentinel it
# does, since every sentinel is one ``;``-joined URL, and ``sentinel`` would then
# name kombu's own transport, without the two changes above. kombu's documented
# alias table (``kombu.transport.TRANSPORT_ALIASES``) maps the scheme to this one.
TRANSPORT_ALIASES["sentinel"] = f"{__name__}:SentinelTransport"


def queue_depths(celery, queues) -> dict[str, int]:
    """Messages waiting in each of ``queues``, every priority together.

    Through kombu's public ``Channel.queue_declare`` (AMQP's ``message_count``),
    which on Redis counts every priority list of the queue; genline does not
    read the transport's own key names. Declaring an existing queue on Redis
    changes nothing.
    """
    with celery.connection_for_read() as conn:
        channel = conn.default_channel
        return {queue: channel.queue_declare(queue=queue).message_count for queue in queues}
