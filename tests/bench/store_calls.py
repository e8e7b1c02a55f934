"""What the job store's hot-path calls cost in one process, and what the public SQLAlchemy path adds.

    .venv/bin/python -m tests.bench.store_calls [--jobs 200] [--reads 500]

A fresh Postgres database (migrated) and a private Redis; no worker, no web. For
``--jobs`` jobs in turn: ``jobs.create``, ``queue_position``, ``jobs.get``, the
claim and end of validate and of generate (with one staged image), each timed
(wall and this thread's CPU; medians). Then ``jobs.get``'s statement read
``--reads`` times per variant, three rounds, client CPU per read:

- ``store``: ``jobs.get`` (``autocommit.execute``: a pool checkout, SQLAlchemy
  Core, a checkin), genline's path;
- ``core_held``: Core on one connection held across the reads (no checkout);
- ``cursor_checkout``: a raw DBAPI cursor on a connection checked out per read;
- ``cursor_held``: a raw DBAPI cursor held open, with the statement compiled
  once to its SQL (what ``onetrip`` did before the public-API round).

Prints one JSON object. docs/performance.md reads it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from flask_migrate import upgrade

from pipeline.config import Config
from pipeline.core.lifecycle import Step
from tests import services
from tests.conftest import base_env


def _timed(samples: dict, name: str, call):
    wall, cpu = time.perf_counter(), time.thread_time()
    result = call()
    samples.setdefault(name, []).append((time.perf_counter() - wall, time.thread_time() - cpu))
    return result


def store_calls(jobs_n: int) -> dict:
    """Median wall and CPU ms of each hot-path call, over ``jobs_n`` jobs (after as many to warm up)."""
    from pipeline.store import jobs
    from pipeline.store.queue import queue_position

    def spec():
        return jobs.NewJob(tenant_id="bench", operation="generate", providers=["local"], prompt="a lighthouse",
                           params={"size": "16x16"}, inputs=None, timeout_s=30, deadline_s=600, max_attempts=3)

    def one_job(samples: dict) -> None:
        job = _timed(samples, "create", lambda: jobs.create(spec(), publish_event=lambda *_: None))
        _timed(samples, "queue_position", lambda: queue_position(job))
        _timed(samples, "get", lambda: jobs.get(job.id))
        _timed(samples, "claim_validate", lambda: jobs.claim(job.id, Step.VALIDATE, "v", 30))
        _timed(samples, "end_validate", lambda: jobs.end_step(
            job.id, Step.VALIDATE, "v", {"step": "generate", "step_outputs": {"validate": {}}, "timing": {}}))
        _timed(samples, "claim_generate", lambda: jobs.claim(job.id, Step.GENERATE, "g", 30))
        stage = {"job_id": job.id, "n": 0, "media_type": "image/png", "data": b"\x89PNG" * 64, "provider": "local",
                 "model": None}
        _timed(samples, "end_generate", lambda: jobs.end_step(
            job.id, Step.GENERATE, "g", {"provider": "local", "model": None, "step": "upload",
                                         "step_outputs": {"generate": {}}, "timing": {}}, stages=[stage]))

    for _ in range(jobs_n):
        one_job({})
    samples: dict = {}
    for _ in range(jobs_n):
        one_job(samples)
    return {name: {"wall_ms": round(statistics.median(w for w, _ in values) * 1000, 3),
                   "cpu_ms": round(statistics.median(c for _, c in values) * 1000, 3)}
            for name, values in samples.items()}


def read_paths(reads: int) -> dict:
    """Client CPU ms per read of ``jobs.get``'s statement, by path, three rounds each."""
    from pipeline.store import autocommit, jobs
    from pipeline.store.models import db
    statement = jobs._GET  # noqa: SLF001 - the store's own statement, read the way each path would
    engine = db.engines[autocommit.BIND]
    sql = str(statement.compile(dialect=engine.dialect))
    ids = [job.id for job in (jobs.create(jobs.NewJob(
        tenant_id="bench", operation="generate", providers=["local"], prompt="p", params={"size": "16x16"},
        inputs=None, timeout_s=30, deadline_s=600, max_attempts=3), publish_event=lambda *_: None)
        for _ in range(50))]
    held = engine.raw_connection()
    cursor = held.cursor()

    def store():
        for i in ids:
            jobs.get(i)

    def core_held():
        with engine.connect() as connection:
            for i in ids:
                connection.execute(statement, {"job_id": i}).all()

    def cursor_checkout():
        for i in ids:
            with engine.connect() as connection:
                own = connection.connection.cursor()
                own.execute(sql, {"job_id": i})
                own.fetchall()
                own.close()

    def cursor_held():
        for i in ids:
            cursor.execute(sql, {"job_id": i})
            cursor.fetchall()

    found: dict = {}
    try:
        for _ in range(3):
            for name, run in (("store", store), ("core_held", core_held), ("cursor_checkout", cursor_checkout),
                              ("cursor_held", cursor_held)):
                rounds = max(1, reads // len(ids))
                cpu = time.thread_time()
                for _ in range(rounds):
                    run()
                found.setdefault(name, []).append(round((time.thread_time() - cpu) / (rounds * len(ids)) * 1000, 3))
    finally:
        held.close()
    return {name: {"cpu_ms_per_read": values} for name, values in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--reads", type=int, default=500)
    args = parser.parse_args()
    services.ensure_postgres()
    url = services.create_database()
    redis = services.RedisServer().start()
    try:
        from web import create_app
        app = create_app(Config.from_env(base_env(url, redis.url, f"file://{tempfile.mkdtemp()}")))
        with app.app_context():
            upgrade()
            report = {"calls": store_calls(args.jobs), "reads": read_paths(args.reads)}
    finally:
        redis.stop()
        services.drop_database(url)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
