"""pipeline.store.autocommit: a statement that is its own transaction, in one round trip,
on an AUTOCOMMIT engine of its own, through public SQLAlchemy (its events see every
statement, its types and errors apply); the job store's hot writes take that path."""
from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
from sqlalchemy import JSON, Column, Integer, LargeBinary, MetaData, Table, bindparam, event, insert, select, text
from sqlalchemy.exc import IntegrityError

from pipeline.core.lifecycle import JobStatus, Step
from pipeline.store import autocommit, jobs
from pipeline.store.models import db

PROBE = Table("autocommit_probe", MetaData(), Column("v", Integer, primary_key=True),
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
        return other.execute(text("SELECT count(*) FROM autocommit_probe")).scalar_one()


@contextmanager
def sent():
    """Every statement sent to Postgres on either engine meanwhile, with whether its
    connection was in autocommit mode (SQLAlchemy's ``before_cursor_execute`` event)."""
    seen: list[tuple[str, str, bool]] = []
    listeners = []
    for name, engine in (("autocommit", db.engines[autocommit.BIND]), ("session", db.engine)):
        def listen(conn, _cursor, statement, _params, _context, _many, name=name):
            seen.append((name, statement, conn.connection.dbapi_connection.autocommit))
        event.listen(engine, "before_cursor_execute", listen)
        listeners.append((engine, listen))
    try:
        yield seen
    finally:
        for engine, listen in listeners:
            event.remove(engine, "before_cursor_execute", listen)


def new_job(tenant: str = "t-autocommit"):
    return jobs.create(jobs.NewJob(tenant_id=tenant, operation="generate", providers=["local"], prompt="p",
                                   params={"size": "16x16"}, inputs=None, timeout_s=30, deadline_s=60, max_attempts=1))


def test_a_statement_commits_as_it_runs_and_session_connections_stay_transactional(probe):
    assert autocommit.available()
    for v in range(20):  # more than the pool holds, so every pooled connection is reused
        # When a write runs here, another connection sees it at once
        autocommit.execute(INSERT, {"v": v, "doc": {"n": v}, "blob": b"x"})
        assert _count() == v + 1
        # And a session's write afterwards, on the session's engine, still rolls back
        db.session.execute(text("INSERT INTO autocommit_probe (v) VALUES (:v)"), {"v": 1000 + v})
        db.session.rollback()
    assert _count() == 20


def test_inside_a_session_transaction_a_statement_joins_it(probe):
    # Given a session with a transaction open
    db.session.execute(text("INSERT INTO autocommit_probe (v) VALUES (500)"))
    # Then a read runs in it (it sees the session's own write) and not as its own transaction
    assert not autocommit.available()
    assert autocommit.rows(READ, {"v": 500})[0].v == 500
    # and rolling the session back leaves nothing behind
    assert _count() == 0


def test_rows_come_back_typed_and_errors_as_sqlalchemys(probe):
    autocommit.execute(INSERT, {"v": 1, "doc": {"a": [1, 2]}, "blob": b"\x00\x01"})
    row = autocommit.rows(READ, {"v": 1})[0]
    # JSON decoded, bytes as bytes, by attribute and by mapping as SQLAlchemy's rows
    assert (row.v, row.doc, row.blob) == (1, {"a": [1, 2]}, b"\x00\x01")
    assert type(row.blob) is bytes and row._mapping["doc"] == {"a": [1, 2]}
    # A constraint violation is SQLAlchemy's IntegrityError, and the engine stays usable
    with pytest.raises(IntegrityError):
        autocommit.execute(INSERT, {"v": 1, "doc": None, "blob": None})
    assert autocommit.rows(READ, {"v": 1})[0].v == 1


def test_each_hot_write_of_a_job_is_one_statement_in_autocommit_mode(stack):
    with stack.app.app_context():
        job = new_job()
        for step, end in ((Step.VALIDATE, {"step": "generate"}), (Step.GENERATE, {"step": "upload"}),
                          (Step.UPLOAD, {"step": "notify"})):
            owner = f"owner-{step.value}"
            # When a step is claimed, reports progress and ends
            with sent() as claim_sent:
                assert jobs.claim(job.id, step, owner, 30) is not None
            with sent() as progress_sent:
                assert jobs.record_progress(job.id, owner, 0.5, {"fraction": 0.5})
            with sent() as end_sent:
                done = jobs.end_step(job.id, step, owner, end, to=JobStatus.COMPLETED if step is Step.UPLOAD else None,
                                     clears_staged=step is Step.UPLOAD)
                assert done
            with sent() as read_sent:
                assert jobs.get(job.id) is not None
            # Then each was one statement on the autocommit engine, with no BEGIN or COMMIT of its own
            for seen in (claim_sent, progress_sent, end_sent, read_sent):
                assert len(seen) == 1, seen
                engine, statement, in_autocommit = seen[0]
                assert engine == "autocommit" and in_autocommit, seen
            # and a generate claim sends its tenant's claim lock in the same statement
            assert claim_sent[0][1].startswith("SELECT pg_advisory_xact_lock") == (step is Step.GENERATE)
        # And the event log holds each write's event once, in order
        types = [e["type"] for e in jobs.events_after(job.id)]
        assert types == ["queued"] + ["started", "progress"] * 3 + ["completed"]
        assert [e["id"] for e in jobs.events_after(job.id)] == list(range(1, len(types) + 1))


def test_concurrent_claims_of_the_same_jobs_take_each_once(stack):
    with stack.app.app_context():
        made = [new_job(f"t-autocommit-race-{n % 3}").id for n in range(20)]
    won: dict[str, list[str]] = {job_id: [] for job_id in made}
    lock = threading.Lock()
    start = threading.Barrier(4)

    def worker(n: int) -> None:
        with stack.app.app_context():
            start.wait()
            for job_id in made:
                owner = f"racer-{n}"
                if jobs.claim(job_id, Step.VALIDATE, owner, 30) is not None:
                    with lock:
                        won[job_id].append(owner)
                    assert jobs.end_step(job_id, Step.VALIDATE, owner, {"step": "generate"})

    # When four threads claim the same twenty jobs at once, each on its own connections
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Then every job was claimed by exactly one, whose end was recorded once
    assert all(len(owners) == 1 for owners in won.values()), won
    with stack.app.app_context():
        for job_id in made:
            events = jobs.events_after(job_id)
            assert [e["type"] for e in events] == ["queued", "started"]
            assert jobs.get(job_id).step == "generate" and jobs.get(job_id).lease_owner is None


def test_constants_are_written_into_a_statement_only_as_plain_words():
    # Given the code's own constants, the IN list is part of the SQL
    sql = str(autocommit.constant_in(PROBE.c.doc, ["queued", "processing"]).compile())
    assert "'queued'" in sql and "'processing'" in sql
    # And anything that would need quoting is refused rather than written
    with pytest.raises(ValueError):
        autocommit.constant_in(PROBE.c.doc, ["queued', 'x"])
