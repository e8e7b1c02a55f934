"""Where one tiny job's time goes: the hops between its events, one job at a time.

    .venv/bin/python -m tests.bench.hops --database-url postgresql://…/an_empty_db [--jobs 60]

Starts the same stack as ``genline bench`` (its own Redis, gunicorn, a prefork
worker ``-c 2``, and the raw-chain baseline), runs tiny jobs one at a time over
SSE, alternating with raw chains, then reads each job's event log. Every event's
``created_at`` is taken by the store as it writes the event, so the hops are:
request → queued (HTTP, auth, validation), queued → started validate (the insert's
commit, the message, the claim), started → started of the next step (the step's
work, its end, the next message and claim), → completed (upload), → the SSE
client. Prints the p50 and max of each hop, and the e2e and raw chain p50.
"""
from __future__ import annotations

import argparse
import statistics
import time

from sqlalchemy import create_engine, text

from pipeline.tooling.bench import baseline, load
from pipeline.tooling.bench.stack import LocalStack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True, help="an empty Postgres database")
    parser.add_argument("--jobs", type=int, default=60)
    a = parser.parse_args()
    stack = LocalStack(2, 2, a.database_url).start()
    try:
        baseline.configure(stack.baseline_redis_url)
        client = load.Client(stack.url, stack.key)
        load.e2e_sse(client, 5, "16x16", lambda: None)  # warm-up
        baseline.chain_latencies(5)
        runs, e2e, chain = [], [], []
        for _ in range(a.jobs):
            sent = time.time()
            _status, job = client.submit(load.job_body("16x16"))
            seen = {}
            client.events(job["id"], lambda event, at: seen.setdefault(event["type"], at))
            runs.append((job["id"], sent, seen["completed"]))
            e2e.append(seen["completed"] - sent)
            chain += baseline.chain_latencies(1)
        engine = create_engine(a.database_url.replace("postgresql://", "postgresql+psycopg2://", 1))
        hops: dict[str, list[float]] = {}
        with engine.connect() as conn:
            for job_id, sent, received in runs:
                rows = conn.execute(text("SELECT seq, type, data, created_at FROM job_events WHERE job_id = :id "
                                         "ORDER BY seq"), {"id": job_id}).all()
                previous, at = "request", sent
                for row in rows:
                    name = row.type + (f" {row.data['step']}" if row.type == "started" else "")
                    stamp = load.epoch(row.created_at.isoformat() + "Z")
                    hops.setdefault(f"{previous} -> {name}", []).append((stamp - at) * 1000)
                    previous, at = name, stamp
                hops.setdefault(f"{previous} -> SSE client", []).append((received - at) * 1000)
        engine.dispose()
        for hop, values in hops.items():
            print(f"{hop:42s} p50 {statistics.median(values):7.2f} ms  max {max(values):7.2f} ms")
        e50, c50 = statistics.median(e2e) * 1000, statistics.median(chain) * 1000
        print(f"e2e p50 {e50:.1f} ms, raw chain p50 {c50:.1f} ms, ratio {e50 / c50:.2f}")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
