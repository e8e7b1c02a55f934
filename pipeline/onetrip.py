"""One round trip to Postgres for a statement that is a transaction on its own.

psycopg2, outside autocommit mode, opens every transaction with a ``BEGIN`` of
its own round trip and ends it with a ``COMMIT`` or ``ROLLBACK`` of another: a
claim (one UPDATE) cost three round trips, a read two more than it needed. On a
busy machine each round trip is two context switches and a wait for a core.
The hot path of a job (the claims, the step ends with no other writes, the
reads of upload and notify, a submission's insert and queue position) runs its
single statements here instead, on a pooled connection in autocommit mode: one
round trip each.

SQLAlchemy has the AUTOCOMMIT isolation level; what this adds is "only while
the session holds nothing": while the caller's session has a transaction open,
the statement runs in it as before (no second connection per request, which
could exhaust the pool), and so it does on SQLite, whose transactions cost no
round trips.

Why not ``engine.execution_options(isolation_level="AUTOCOMMIT")``: it shares
the pool, and every check-in resets the connection's isolation level, which
psycopg2 turns into a ``SET default_transaction_isolation TO DEFAULT`` round
trip at the next switch (seen in Postgres's statement log): two round trips
again. Switching psycopg2's own ``autocommit`` flag while the connection is
idle sends nothing, so that is what ``connection()`` does.
"""
from __future__ import annotations

from contextlib import contextmanager
from weakref import WeakSet

from sqlalchemy import event

from pipeline.models import db

PREFIX_OPTION = "genline_prefix"
"""Execution option: SQL sent before the statement in the same round trip (and,
in autocommit mode, the same implicit transaction), e.g. an advisory lock."""

_LISTENING: WeakSet = WeakSet()


def _prefix(_conn, _cursor, statement, parameters, context, _executemany):
    prefix = context.execution_options.get(PREFIX_OPTION) if context is not None else None
    # Postgres runs the statements of one simple query in one transaction, each
    # with a snapshot of its own taken when it starts: so the statement sees
    # everything committed before the prefix's lock was granted.
    return (f"{prefix}; {statement}" if prefix else statement), parameters


def _engine():
    engine = db.engine
    if engine not in _LISTENING:
        event.listen(engine, "before_cursor_execute", _prefix, retval=True)
        _LISTENING.add(engine)
    return engine


def available() -> bool:
    """True when a statement run here is its own transaction, in one round trip."""
    return db.engine.dialect.name == "postgresql" and not db.session().in_transaction()


@contextmanager
def connection(prefix: str | None = None):
    """A pooled connection in autocommit mode (check ``available()`` first).

    ``prefix``: SQL sent with each statement, in its round trip and transaction.
    """
    with _engine().connect() as conn:
        raw = conn.connection.dbapi_connection
        raw.autocommit = True  # idle, so psycopg2 sends nothing
        try:
            yield conn.execution_options(**{PREFIX_OPTION: prefix}) if prefix else conn
        finally:
            if not raw.closed:  # a lost connection is discarded by the pool anyway
                raw.autocommit = False


def rows(stmt, params: dict) -> list:
    """The rows a read returns: in one round trip when ``available()``, else
    through the session, whose transaction it then rolls back (as every reader did)."""
    if available():
        with connection() as conn:
            return conn.execute(stmt, params).all()
    try:
        return db.session.connection().execute(stmt, params).all()
    finally:
        db.session.rollback()
