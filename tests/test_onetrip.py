"""pipeline.store.onetrip: a statement that is its own transaction, run on a pooled
connection that goes back to the pool in transactional mode, with SQLAlchemy's
types and errors."""
from __future__ import annotations

import gc

import pytest
from sqlalchemy import JSON, Column, Integer, LargeBinary, MetaData, Table, bindparam, insert, select, text
from sqlalchemy.exc import IntegrityError

from pipeline.store import onetrip
from pipeline.store.models import db

PROBE = Table("onetrip_probe", MetaData(), Column("v", Integer, primary_key=True),
              Column("doc", JSON), Column("blob", LargeBinary))
INSERT = insert(PROBE).values(v=bindparam("v"), doc=bindparam("doc", type_=JSON), blob=bindparam("blob"))
READ = select(PROBE).where(PROBE.c.v == bindparam("v"))


@pytest.fixture
def probe(stack):
    with stack.app.app_context():
        PROBE.drop(db.engine, checkfirst=True)
        PROBE.create(db.engine)
        try:
            yield stack.app
        finally:
            db.session.rollback()
            PROBE.drop(db.engine)


def _count() -> int:
    with db.engine.connect() as other:
        return other.execute(text("SELECT count(*) FROM onetrip_probe")).scalar()


def test_a_statement_commits_as_it_runs_and_its_connection_goes_back_transactional(probe):
    assert onetrip.available()
    for v in range(20):  # more than the pool holds, so every pooled connection is reused
        # When a write runs through onetrip, another connection sees it at once
        onetrip.execute(INSERT, {"v": v, "doc": {"n": v}, "blob": b"x"})
        assert _count() == v + 1
        # And a session's write afterwards, on whichever pooled connection, still rolls back
        db.session.execute(text("INSERT INTO onetrip_probe (v) VALUES (:v)"), {"v": 1000 + v})
        db.session.rollback()
    assert _count() == 20


def test_rows_come_back_typed_and_errors_as_sqlalchemys(probe):
    onetrip.execute(INSERT, {"v": 1, "doc": {"a": [1, 2]}, "blob": b"\x00\x01"})
    row = onetrip.rows(READ, {"v": 1})[0]
    # JSON decoded, bytes as bytes, by attribute and by mapping as SQLAlchemy's rows
    assert (row.v, row.doc, row.blob) == (1, {"a": [1, 2]}, b"\x00\x01")
    assert type(row.blob) is bytes and row._mapping["doc"] == {"a": [1, 2]}
    # A constraint violation is SQLAlchemy's IntegrityError, and the connection stays usable
    with pytest.raises(IntegrityError):
        onetrip.execute(INSERT, {"v": 1, "doc": None, "blob": None})
    assert onetrip.rows(READ, {"v": 1})[0].v == 1


def test_a_statement_no_longer_used_leaves_no_compiled_form_behind(probe):
    count = len(onetrip._COMPILED)
    # When statements built for one call each run and are dropped
    for v in range(5):
        onetrip.execute(insert(PROBE).values(v=bindparam("v")), {"v": 100 + v})
    gc.collect()
    # Then their compiled forms went with them (built-once statements stay)
    assert len(onetrip._COMPILED) <= count + 1
    assert onetrip.rows(READ, {"v": 104})[0].v == 104


def test_constants_are_written_into_a_statement_only_as_plain_words():
    # Given the code's own constants, the IN list is part of the SQL
    sql = str(onetrip.constant_in(PROBE.c.doc, ["queued", "processing"]).compile())
    assert "'queued'" in sql and "'processing'" in sql
    # And anything that would need quoting is refused rather than written
    with pytest.raises(ValueError):
        onetrip.constant_in(PROBE.c.doc, ["queued', 'x"])
