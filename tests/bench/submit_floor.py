"""What bounds submit: the prescribed libraries' own cost, beside bare Flask and genline.

    .venv/bin/python -m tests.bench.submit_floor --database-url postgresql://…/an_empty_db [--jobs 400]

The submit targets compare ``POST /v1/jobs`` with a bare Flask JSON endpoint.
A submission that is durable and dispatched needs, at the least, the calls
this project is built on: Flask-Limiter's check on Redis, one INSERT committed
in Postgres (psycopg2, one round trip) and one Celery message with its
``task-sent`` event. The *floor* endpoint here makes exactly those calls and
nothing else (no validation, no job row shape, no queue position, no signed
URLs), so its rate is an upper bound for any submission built on this stack.

Starts the same stack as ``genline bench`` (its own Redis, gunicorn with
deploy/gunicorn.conf.py, 2 gevent workers), genline's worker stopped so that
the three webs run on an otherwise idle machine, plus the floor app under the
same gunicorn settings. Each round posts ``--jobs`` tiny jobs at
``--concurrency`` to bare Flask, each of the three calls alone, the floor and
genline in turn; prints the req/s and p50/p99 of each, and the ratios to bare
Flask, medians of the rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import uuid

from pipeline.config import fix_database_url
from pipeline.tooling.bench import load
from pipeline.tooling.bench.stack import LocalStack

FLOOR_QUEUE = "floor"


def _create_table(database_url: str) -> None:
    import sqlalchemy as sa
    engine = sa.create_engine(fix_database_url(database_url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS floor_jobs (id varchar(40) PRIMARY KEY, "
                             "body json NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"))
    engine.dispose()


def create_floor_app():
    """The floor endpoint (see the module docstring), for gunicorn."""
    import sqlalchemy as sa
    from celery import Celery
    from flask import Flask, jsonify, request
    from flask_limiter import Limiter

    engine = sa.create_engine(fix_database_url(os.environ["DATABASE_URL"]), pool_size=5, max_overflow=10)
    celery = Celery("genline-floor", broker=os.environ["REDIS_URL"])
    celery.conf.update(task_ignore_result=True, task_serializer="json", task_send_sent_event=True,
                       broker_transport="pipeline.adapters.broker:Transport")  # genline's: one Redis client reused
    app = Flask("genline-floor")
    limiter = Limiter(key_func=lambda: request.headers.get("Authorization", ""), app=app,
                      storage_uri=os.environ["REDIS_URL"], strategy="moving-window", headers_enabled=True)

    def insert(job_id: str, body: dict) -> None:
        raw = engine.raw_connection()
        try:
            raw.dbapi_connection.autocommit = True  # the INSERT commits in its one round trip
            with raw.cursor() as cursor:
                cursor.execute("INSERT INTO floor_jobs (id, body) VALUES (%s, %s)", (job_id, json.dumps(body)))
            raw.dbapi_connection.autocommit = False
        finally:
            raw.close()

    def send(job_id: str) -> None:
        celery.send_task("floor.validate", args=[job_id], queue=FLOOR_QUEUE)

    def answer(job_id: str):
        return jsonify({"id": job_id, "status": "queued"}), 202

    @app.post("/v1/jobs")
    @limiter.limit("1000000/second")
    def create():
        job_id = "job_" + uuid.uuid4().hex
        insert(job_id, request.get_json(force=True, silent=True) or {})
        send(job_id)
        return answer(job_id)

    # Each call alone, to see which of them the floor's cost is.
    @app.post("/only/limit/v1/jobs")
    @limiter.limit("1000000/second")
    def only_limit():
        request.get_json(force=True, silent=True)
        return answer("job_" + uuid.uuid4().hex)

    @app.post("/only/insert/v1/jobs")
    def only_insert():
        job_id = "job_" + uuid.uuid4().hex
        insert(job_id, request.get_json(force=True, silent=True) or {})
        return answer(job_id)

    @app.post("/only/send/v1/jobs")
    def only_send():
        request.get_json(force=True, silent=True)
        job_id = "job_" + uuid.uuid4().hex
        send(job_id)
        return answer(job_id)

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    return app


def _figures(result: dict) -> dict:
    return {"rps": round(result["rps"], 1), "p50_ms": round(load.pct(result["latencies"], 50) * 1000, 1),
            "p99_ms": round(load.pct(result["latencies"], 99) * 1000, 1), "errors": result["errors"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True, help="an empty Postgres database")
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    a = parser.parse_args()
    _create_table(a.database_url)
    stack = LocalStack(2, 2, a.database_url).start()
    try:
        for started in [p for p in stack.processes if p.name.endswith("worker")]:
            started.stop()
            stack.processes.remove(started)
        floor = load.Client(stack._web("floor-web", "tests.bench.submit_floor:create_floor_app()"), stack.key)
        series = {"bare Flask": (load.Client(stack.baseline_url, None), "/v1/jobs"),
                  "limiter only": (floor, "/only/limit/v1/jobs"), "insert only": (floor, "/only/insert/v1/jobs"),
                  "Celery message only": (floor, "/only/send/v1/jobs"), "floor": (floor, "/v1/jobs"),
                  "genline": (load.Client(stack.url, stack.key), "/v1/jobs")}
        body = load.job_body("16x16")
        for client, path in series.values():  # warm-up
            load.timed_posts(client, path, 20, 4, body, lambda: None)
        rounds = []
        for _ in range(a.rounds):
            rounds.append({name: _figures(load.timed_posts(client, path, a.jobs, a.concurrency, body, lambda: None))
                           for name, (client, path) in series.items()})
    finally:
        stack.stop()
    medians = {name: {k: statistics.median(r[name][k] for r in rounds) for k in ("rps", "p50_ms", "p99_ms")}
               for name in series}
    flask_rps = medians["bare Flask"]["rps"]
    ratios = {name: round(statistics.median(r[name]["rps"] / r["bare Flask"]["rps"] for r in rounds), 3)
              for name in series if name != "bare Flask"}
    print(json.dumps({"concurrency": a.concurrency, "jobs": a.jobs, "rounds": rounds, "medians": medians,
                      "rps_ratio_to_bare_flask": ratios, "bare_flask_rps": flask_rps}, indent=2))


if __name__ == "__main__":
    main()
