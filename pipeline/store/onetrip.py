"""One round trip to Postgres for a statement that is a transaction on its own.

psycopg2, outside autocommit mode, opens every transaction with a ``BEGIN`` of
its own round trip and ends it with a ``COMMIT`` or ``ROLLBACK`` of another: a
claim (one UPDATE) cost three round trips, a read two more than it needed. On a
busy machine each round trip is two context switches and a wait for a core.
The hot path of a job (the claims, the step ends, the reads of upload and
notify, a submission's insert and queue position) runs its single statements
here instead, on a pooled connection in autocommit mode: one round trip each.

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
idle sends nothing, so that is what ``execute()`` does.

Why a cursor of its own rather than ``Connection.execute``: these few
statements are built once (``lru_cache``) and run a dozen times per job, and
SQLAlchemy's per-execution work (the statement's cache key, the execution
context, the result object, a ``Connection`` per checkout) was most of their
cost in the worker's pool processes (py-spy). ``_Compiled`` keeps what
SQLAlchemy computes for a statement (its SQL, its literal values, its types'
bind and result processors) and the pool still hands out, pings and
invalidates the connections; a driver error is raised as SQLAlchemy's own
(``DBAPIError.instance``), as ``Connection.execute`` would raise it.
"""
from __future__ import annotations

import re
from collections import namedtuple
from contextlib import contextmanager
from weakref import WeakKeyDictionary

from sqlalchemy import literal_column
from sqlalchemy.exc import DBAPIError

from pipeline.store.models import db


class _Compiled:
    """A statement compiled for one dialect, ready to run on a DBAPI cursor."""

    def __init__(self, stmt, dialect):
        compiled = stmt.compile(dialect=dialect)
        # An expanding IN list is rendered anew for each execution: SQLAlchemy runs those.
        self.expands = bool(compiled.post_compile_params or compiled.literal_execute_params)
        self.sql = compiled.string
        self.literals, self.processors = {}, {}
        for name, bind in compiled.binds.items():
            name = compiled.escaped_bind_names.get(name, name)
            if not bind.required:  # a value fixed when the statement was built
                self.literals[name] = bind.effective_value
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self.processors[name] = process
        self.columns = list(getattr(stmt, "exported_columns", ()))
        self.dialect = dialect
        self.row = None  # the row class and result processors, made at the first fetch
        self.result_processors: list = []

    def params(self, given: dict) -> dict:
        values = dict(self.literals)
        values.update(given)
        for name, process in self.processors.items():
            if name in values:
                values[name] = process(values[name])
        return values

    def rows(self, fetched: list, description) -> list:
        if self.row is None:
            names = [d[0] for d in description]
            base = namedtuple("Row", names, rename=True)
            # ``row.name`` as SQLAlchemy's Row, and ``row._mapping[name]`` too.
            self.row = type("Row", (base,), {"__slots__": (), "_mapping": property(
                lambda row, names=names: dict(zip(names, row)))})
            self.result_processors = [
                (i, process) for i, (column, d) in enumerate(zip(self.columns, description))
                if (process := column.type.dialect_impl(self.dialect).result_processor(self.dialect, d[1]))]
        if self.result_processors:
            fetched = [list(r) for r in fetched]
            for r in fetched:
                for i, process in self.result_processors:
                    r[i] = process(r[i])
        return [self.row(*r) for r in fetched]


_COMPILED: WeakKeyDictionary = WeakKeyDictionary()
"""Per statement (weakly: a statement its ``lru_cache`` dropped goes with its
compiled forms), its compiled form per dialect."""


def _compiled(stmt, dialect) -> _Compiled:
    key = (dialect.name, dialect.driver, dialect.server_version_info)
    forms = _COMPILED.get(stmt)
    if forms is None:
        forms = _COMPILED.setdefault(stmt, {})
    found = forms.get(key)
    if found is None:
        found = forms[key] = _Compiled(stmt, dialect)
    return found


_WORD = re.compile(r"[a-z_]+")


def constant_in(column, values):
    """``column IN ('a', 'b')`` with the values written into the statement.

    For a statement built once whose list is a set of the code's own
    constants (statuses, priorities): a bound IN list is expanded again at
    every execution (SQLAlchemy's post-compile parameters), and such a
    statement cannot run on ``execute``'s cursor path. Only plain lowercase
    words are written, so nothing needs quoting.
    """
    values = list(values)
    if not all(_WORD.fullmatch(v) for v in values):
        raise ValueError(f"not plain words: {values!r}")
    return column.in_([literal_column(f"'{v}'") for v in values])


@contextmanager
def _autocommit(raw):
    """psycopg2's own autocommit flag for the duration; switched while idle, so nothing is sent."""
    raw.autocommit = True
    try:
        yield
    finally:
        if not raw.closed:  # a lost connection is discarded by the pool anyway
            raw.autocommit = False


def available() -> bool:
    """True when a statement run here is its own transaction, in one round trip."""
    return db.engine.dialect.name == "postgresql" and not db.session().in_transaction()


def execute(stmt, params: dict, prefix: str | None = None) -> list:
    """Run ``stmt`` (built once, not per call) in autocommit mode; its rows (check ``available()`` first).

    ``prefix``: SQL sent before the statement in the same round trip and, in
    autocommit mode, the same implicit transaction (e.g. an advisory lock):
    Postgres runs the statements of one simple query in one transaction, each
    with a snapshot of its own taken when it starts, so the statement sees
    everything committed before the prefix's lock was granted.
    """
    engine = db.engine
    compiled = _compiled(stmt, engine.dialect)
    if compiled.expands:
        if prefix:
            raise ValueError("a prefix needs a statement without expanding parameters")
        return _execute_expanding(engine, stmt, params)
    values = compiled.params(params)
    sql = f"{prefix}; {compiled.sql}" if prefix else compiled.sql
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        pooled = engine.raw_connection()  # the pool's checkout: pinged after idle, invalidated when lost
    except dbapi_error as exc:  # cannot connect: as SQLAlchemy's Connection would raise it
        raise DBAPIError.instance(None, None, exc, dbapi_error, dialect=engine.dialect) from exc
    raw = pooled.dbapi_connection
    try:
        with _autocommit(raw), raw.cursor() as cursor:
            cursor.execute(sql, values)
            description = cursor.description
            fetched = cursor.fetchall() if description else []
    except dbapi_error as exc:
        lost = engine.dialect.is_disconnect(exc, raw, None)
        if lost:
            pooled.invalidate(exc)
        raise DBAPIError.instance(sql, values, exc, dbapi_error, connection_invalidated=lost,
                                  dialect=engine.dialect) from exc
    finally:
        pooled.close()
    return compiled.rows(fetched, description) if description else []


def _execute_expanding(engine, stmt, params: dict) -> list:
    """``execute`` through SQLAlchemy's ``Connection``, for statements with an expanding IN list."""
    with engine.connect() as conn, _autocommit(conn.connection.dbapi_connection):
        result = conn.execute(stmt, params)
        return result.all() if result.returns_rows else []


def rows(stmt, params: dict) -> list:
    """The rows a read returns: in one round trip when ``available()``, else
    through the session, whose transaction it then rolls back (as every reader did)."""
    if available():
        return execute(stmt, params)
    try:
        return db.session.connection().execute(stmt, params).all()
    finally:
        db.session.rollback()
