"""pipeline.onetrip: a statement that is its own transaction, and the pooled
connection it borrowed handed back in transactional mode."""
from __future__ import annotations

from sqlalchemy import text

from pipeline import onetrip
from pipeline.models import db


def test_a_statement_commits_as_it_runs_and_the_connection_goes_back_transactional(stack):
    with stack.app.app_context():
        db.session.execute(text("CREATE TABLE IF NOT EXISTS onetrip_probe (v int)"))
        db.session.execute(text("DELETE FROM onetrip_probe"))
        db.session.commit()
        assert onetrip.available()
        # When a write runs through onetrip
        with onetrip.connection() as conn:
            raw = conn.connection.dbapi_connection
            conn.execute(text("INSERT INTO onetrip_probe VALUES (1)"))
            # Then another connection sees it at once: it committed as it ran
            with db.engine.connect() as other:
                assert other.execute(text("SELECT count(*) FROM onetrip_probe")).scalar() == 1
        # And the connection it used is back in transactional mode, so that a
        # later session's rollback on it still undoes its writes
        assert raw.autocommit is False
        cursor = raw.cursor()
        cursor.execute("INSERT INTO onetrip_probe VALUES (2)")
        raw.rollback()
        cursor.execute("SELECT count(*) FROM onetrip_probe")
        assert cursor.fetchone()[0] == 1
        raw.rollback()
        db.session.execute(text("DROP TABLE onetrip_probe"))
        db.session.commit()
