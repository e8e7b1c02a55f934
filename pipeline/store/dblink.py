"""Time limits on the link to Postgres: a dead link fails in seconds, not in TCP's quarter of an hour.

When the network between genline and Postgres goes down (a partition, a failover
that moves the database's address), no packet says so. Without limits a new
connection waits for its SYN retransmissions (about 2 minutes on Linux) and a
statement on an open connection waits until TCP gives up retransmitting (about
15 minutes), or forever when the statement was delivered and only the answer is
lost. A web request then hangs to gunicorn's timeout, and a worker's claims,
step ends and lease renewals stall with it.

libpq's connection parameters bound each case (all public, documented keywords):

- ``connect_timeout``: opening a connection;
- ``keepalives_*``: a connection that is idle, in the pool or waiting for an
  answer its server already acknowledged, is probed and dropped after
  ``GENLINE_DB_LINK_TIMEOUT_S`` of silence;
- ``tcp_user_timeout``: a statement sent but never acknowledged drops the
  connection after the same time.

The driver then raises ``OperationalError`` ("could not receive data from
server", "server closed the connection unexpectedly"), which SQLAlchemy's
psycopg2 dialect counts as a disconnect: it invalidates the pool, so once the
link is back every stale connection is replaced instead of tried.

The server's end has the same problem: a backend whose client vanished waits on
its socket (perhaps inside a transaction, holding row locks and a connection
slot) until the server's keepalives give up, two hours by default. The same
limits sent as the session's ``options`` make Postgres drop it too.

A value ``DATABASE_URL`` sets itself (``?connect_timeout=10``) wins over these.
"""
from __future__ import annotations

from sqlalchemy.engine import make_url

KEEPALIVE_PROBES = 3
"""Unanswered keepalive probes before a connection counts as dead."""


def keepalive_times(link_timeout_s: int) -> tuple[int, int]:
    """(idle, interval) in whole seconds such that idle + probes × interval ≈ ``link_timeout_s``."""
    interval = max(1, link_timeout_s // 5)
    return max(1, link_timeout_s - KEEPALIVE_PROBES * interval), interval


def connect_args(url: str, connect_timeout_s: int, link_timeout_s: int, server_timeouts: bool) -> dict:
    """The psycopg2 ``connect_args`` that bound every wait on the database link (none for SQLite)."""
    if not url.startswith("postgresql"):
        return {}
    given = make_url(url).query
    args: dict = {"connect_timeout": connect_timeout_s}
    if link_timeout_s:
        idle, interval = keepalive_times(link_timeout_s)
        args.update(keepalives=1, keepalives_idle=idle, keepalives_interval=interval,
                    keepalives_count=KEEPALIVE_PROBES, tcp_user_timeout=link_timeout_s * 1000)
        if server_timeouts:
            server = {"tcp_keepalives_idle": idle, "tcp_keepalives_interval": interval,
                      "tcp_keepalives_count": KEEPALIVE_PROBES, "tcp_user_timeout": link_timeout_s * 1000}
            options = " ".join(f"-c {name}={value}" for name, value in server.items())
            # The URL's own options come after ours: for a setting named twice, Postgres keeps the last.
            args["options"] = f"{options} {given['options']}" if given.get("options") else options
    return {key: value for key, value in args.items() if key == "options" or key not in given}
