"""Status lookup latency (GET /v1/jobs/{id}) with 10k and with 1M job rows.

    .venv/bin/python -m tests.bench.status_lookup [--small 10000] [--large 1000000] [--lookups 2000]

Two fresh Postgres databases, migrated; rows are inserted in bulk with SQL
(generate_series), 10% of them the looked-up tenant's, and the same backlog
of 100 queued jobs in both (a queued job's answer carries its queue
position, a COUNT of the queue ahead: it grows with the backlog, not with
the table). The lookups run through the Flask app in process (no HTTP, so
the figure is app plus database), for random jobs of the tenant, a tenth of
them queued, ALTERNATING between the two databases: the machine is shared,
and interleaving puts the same noise on both sides of the ratio.
Target (issue 7): the p99 at the large size within 1.5x of the p99 at the small size.
"""
from __future__ import annotations

import argparse
import json
import random
import time

from sqlalchemy import text

from pipeline.tooling.bench.load import pct
from tests import services

KEY = "status-bench-key"
TENANT = "lookup"

# Every NOT NULL column without a default gets a value of its type; the rest is named below.
FILLERS = {"character varying": "'x'", "text": "'x'", "integer": "0", "double precision": "1.0",
           "json": "'{}'::json", "jsonb": "'{}'::jsonb", "timestamp with time zone": "now()",
           "timestamp without time zone": "now()", "boolean": "false", "bigint": "0", "real": "1.0"}
NAMED = {
    # job_ + 26 characters of the id alphabet (hex digits are in it), ordered by i
    "id": "'job_' || lpad(to_hex(i), 26, '0')",
    "tenant_id": f"CASE WHEN i % 10 = 0 THEN '{TENANT}' ELSE 't' || (i % 97) END",
    "status": "CASE WHEN i < 1000 AND i % 10 = 0 THEN 'queued' ELSE 'completed' END",
    "step": "CASE WHEN i < 1000 AND i % 10 = 0 THEN 'validate' ELSE 'notify' END",
    "operation": "'generate'", "providers": "'[\"local\"]'::json", "provider": "'local'", "priority": "'normal'",
    "params": "'{\"size\": \"16x16\"}'::json", "prompt": "'a lighthouse'",
    "created_at": "now() - interval '1 second' * (2000000 - i)", "updated_at": "now()",
    "deadline_at": "now() + interval '1 day'",
}


def insert_sql(conn, start: int, stop: int) -> str:
    cols = conn.execute(text(
        "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_name = 'jobs'")).all()
    names, values = [], []
    for name, dtype, nullable, default in cols:
        if name in NAMED:
            names.append(name)
            values.append(NAMED[name])
        elif nullable == "NO" and default is None:
            names.append(name)
            values.append(FILLERS[dtype])
    quoted = ", ".join(f'"{n}"' for n in names)
    return f"INSERT INTO jobs ({quoted}) SELECT {', '.join(values)} FROM generate_series({start}, {stop - 1}) AS i"


def grow(app, db, start: int, stop: int) -> float:
    began = time.monotonic()
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text(insert_sql(conn, start, stop)))
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE jobs"))
    return time.monotonic() - began


def _get(client, i: int) -> float:
    start = time.perf_counter()
    response = client.get(f"/v1/jobs/job_{i:026x}", headers={"Authorization": f"Bearer {KEY}"})
    took = time.perf_counter() - start
    assert response.status_code == 200, response.get_data(as_text=True)
    return took


def lookups(apps: dict, n: int) -> dict:
    """p50/p99 ms of GET /v1/jobs/{id} per database, alternating: {rows: {p50_ms, p99_ms, …}}."""
    clients = {rows: app.test_client() for rows, app in apps.items()}
    times = {rows: {"completed": [], "queued": []} for rows in apps}
    queued = list(range(0, 1000, 10))
    for j in range(n + 50):
        for rows, client in clients.items():
            kind = "queued" if j % 10 == 0 else "completed"
            i = random.choice(queued) if kind == "queued" else random.randrange(1000, rows, 10)
            took = _get(client, i)
            if j >= 50:  # the first ones warm caches and the pool
                times[rows][kind].append(took)
    out = {}
    for rows, t in times.items():
        every = t["completed"] + t["queued"]
        out[rows] = {"rows": rows, "p50_ms": round(pct(every, 50) * 1000, 2), "p99_ms": round(pct(every, 99) * 1000, 2),
                     "completed_p99_ms": round(pct(t["completed"], 99) * 1000, 2),
                     "queued_p99_ms": round(pct(t["queued"], 99) * 1000, 2)}
    return out


def make_app(url: str, redis_url: str):
    from flask_migrate import upgrade

    from pipeline.config import Config
    from web import create_app
    app = create_app(Config.from_env({"DATABASE_URL": url, "REDIS_URL": redis_url,
                                      "GENLINE_API_KEYS": f"{TENANT}:{KEY}", "GENLINE_LOG_LEVEL": "WARNING"}))
    with app.app_context():
        upgrade()
    return app


def run(args) -> dict:
    from pipeline.store.models import db
    services.ensure_postgres()
    urls = {args.small: services.create_database(), args.large: services.create_database()}
    redis = services.RedisServer().start()
    try:
        apps = {rows: make_app(url, redis.url) for rows, url in urls.items()}
        report = {f"insert_{rows}_s": round(grow(app, db, 0, rows), 1) for rows, app in apps.items()}
        result = lookups(apps, args.lookups)
        report.update(small=result[args.small], large=result[args.large])
        report["p99_ratio"] = round(report["large"]["p99_ms"] / report["small"]["p99_ms"], 2)
        report["p50_ratio"] = round(report["large"]["p50_ms"] / report["small"]["p50_ms"], 2)
        report["target_met"] = report["p99_ratio"] <= 1.5
        for app in apps.values():
            with app.app_context():
                db.engine.dispose()
        return report
    finally:
        redis.stop()
        for url in urls.values():
            services.drop_database(url)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", type=int, default=10_000)
    p.add_argument("--large", type=int, default=1_000_000)
    p.add_argument("--lookups", type=int, default=2000)
    print(json.dumps(run(p.parse_args()), indent=2))


if __name__ == "__main__":
    main()
