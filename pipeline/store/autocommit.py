"""Single statements that are a transaction on their own: one round trip to Postgres each.

psycopg2, outside autocommit mode, opens every transaction with a ``BEGIN`` and
ends it with a ``COMMIT`` or ``ROLLBACK``: a claim (one UPDATE) would cost
three round trips, a read two more than it needs. The hot path of a job (its
claims and step ends, the reads of upload and notify, a submission's insert
and queue position) runs its single statements here instead: on a second
engine of the same database (a Flask-SQLAlchemy bind, ``AUTOCOMMIT``), through
SQLAlchemy's own ``Connection.execute`` and compiled cache, so the statements
are seen by SQLAlchemy's events and tracing like any other.

Why a bind of its own rather than ``engine.execution_options(isolation_level=...)``
on the main engine: that shares the pool, and every check-in resets the
connection's isolation level, which psycopg2 turns into an extra round trip at
the next switch. A pool whose connections are always in autocommit mode needs
no reset (psycopg2 sends nothing for a rollback outside a transaction).

"Only while the session holds nothing": while the caller's session has a
transaction open, the statement runs in it as before (its reads see its own
writes), and so it does on SQLite, whose transactions cost no round trips.
"""
from __future__ import annotations

import re
from typing import Any

from sqlalchemy import event, literal_column

from pipeline.store.models import db

BIND = "autocommit"
"""The Flask-SQLAlchemy bind key of the autocommit engine (see ``bind_options``)."""

PREFIX = "genline_prefix"
"""Execution option: SQL sent before the statement in the same round trip (``execute``)."""

_WORD = re.compile(r"[a-z_]+")


def bind_options(url: str, engine_options: dict) -> dict:
    """The ``SQLALCHEMY_BINDS`` entry of the autocommit engine (Postgres only)."""
    return dict(engine_options, url=url, isolation_level="AUTOCOMMIT")


def install(engine) -> None:
    """Listen on the autocommit engine for statements sent with a ``PREFIX``.

    SQLAlchemy's documented ``before_cursor_execute`` hook (``retval=True``)
    may return a new statement: the prefix and the statement then go as one
    simple query, which Postgres runs as one implicit transaction, each
    statement with a snapshot of its own taken when it starts.
    """
    event.listen(engine, "before_cursor_execute", _with_prefix, retval=True)


def _with_prefix(_conn, _cursor, statement, parameters, context, _executemany):
    prefix = context.execution_options.get(PREFIX) if context is not None else None
    if prefix:
        statement = f"{prefix}; {statement}"
    return statement, parameters


def constant_in(column, values):
    """``column IN ('a', 'b')`` with the values written into the statement.

    For a statement built once whose list is a set of the code's own constants
    (statuses, priorities): a bound IN list is rendered again at every
    execution (SQLAlchemy's post-compile parameters). Only plain lowercase
    words are written, so nothing needs quoting.
    """
    values = list(values)
    if not all(_WORD.fullmatch(v) for v in values):
        raise ValueError(f"not plain words: {values!r}")
    return column.in_([literal_column(f"'{v}'") for v in values])


def _engine():
    return db.engines.get(BIND)


def available() -> bool:
    """True when a statement run here is its own transaction, in one round trip."""
    return _engine() is not None and not db.session().in_transaction()


def execute(stmt, params: dict, prefix: str | None = None) -> list[Any]:
    """Run ``stmt`` as a transaction of its own (check ``available()`` first); its rows.

    ``prefix``: SQL (pyformat parameters from ``params``) run before the
    statement in the same round trip and implicit transaction, e.g. an
    advisory lock the statement must run under.
    """
    with _engine().connect() as connection:
        options = {PREFIX: prefix} if prefix else {}
        result = connection.execute(stmt, params, execution_options=options)
        return list(result.all()) if result.returns_rows else []


def rows(stmt, params: dict) -> list[Any]:
    """The rows a read returns: in one round trip when ``available()``, else
    through the session, whose transaction it then rolls back (as every reader did)."""
    if available():
        return execute(stmt, params)
    try:
        return list(db.session.connection().execute(stmt, params).all())
    finally:
        db.session.rollback()
