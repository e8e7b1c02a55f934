"""How soon a frontend learns that a job ended: an SSE client against a client polling every 2 s.

For each job, latency = when the client saw the job end - the ``created_at`` of
the job's ``completed`` event (the terminal transition in the store). Both
clients follow the same jobs at the same time, on one machine (one clock).

    .venv/bin/python -m tests.bench.sse_latency --jobs 300 --in-flight 20

It starts its own Redis, Postgres database, a prefork worker and one gunicorn
gevent worker (as the tests do), and removes them afterwards.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import requests

from tests import services
from tests.conftest import Stack, base_env

KEY = "bench-sse-key"


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def follow_with_sse(url: str, job: dict) -> tuple[float, float]:
    """(created_at of the terminal event, when this client received it)."""
    with requests.get(job["urls"]["events"], stream=True, timeout=120) as response:
        event = None
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event in ("completed", "failed", "canceled"):
                received = time.time()
                return _ts(json.loads(line[6:])["created_at"]), received
    raise RuntimeError(f"stream of {job['id']} closed without a terminal event")


def follow_by_polling(url: str, job: dict, interval: float) -> float:
    """When a client polling every ``interval`` s first saw the job terminal."""
    # A random phase: real pollers do not poll in step with the jobs' ends.
    time.sleep(random.uniform(0, interval))
    while True:
        body = requests.get(job["urls"]["self"], timeout=30).json()
        if body["status"] in ("completed", "failed", "canceled"):
            return time.time()
        time.sleep(interval)


def run_job(url: str, interval: float, results: list, lock: threading.Lock) -> None:
    body = {"prompt": f"bench {random.random()}", "params": {"size": "16x16"}}
    job = requests.post(f"{url}/v1/jobs", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=30).json()
    polled = {}
    poller = threading.Thread(target=lambda: polled.setdefault("at", follow_by_polling(url, job, interval)))
    poller.start()
    ended, seen = follow_with_sse(url, job)
    poller.join()
    with lock:
        results.append({"sse_ms": (seen - ended) * 1000, "poll_ms": (polled["at"] - ended) * 1000})


def summarize(values: list[float]) -> dict:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"median_ms": round(statistics.median(ordered), 1), "p99_ms": round(p99, 1),
            "max_ms": round(ordered[-1], 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--in-flight", type=int, default=20)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    args = parser.parse_args(argv)

    services.ensure_postgres()
    log_dir = Path(tempfile.mkdtemp(prefix="genline-bench-sse-"))
    redis = services.RedisServer().start()
    db_url = services.create_database()
    env = base_env(db_url, redis.url, (log_dir / "outputs").as_uri(), GENLINE_API_KEYS=f"bench:{KEY}",
                   GENLINE_RATE_LIMIT="100000/minute", GENLINE_LOG_LEVEL="WARNING", GUNICORN_ACCESSLOG="/dev/null")
    stack = Stack(env, log_dir, redis)
    web = None
    try:
        stack.migrate()
        stack.start_worker(concurrency=args.concurrency, name="bench-sse")
        web, url = services.start_gunicorn(env, log_dir, workers=1)
        results: list[dict] = []
        lock = threading.Lock()
        gate = threading.Semaphore(args.in_flight)

        def one():
            try:
                run_job(url, args.poll_interval, results, lock)
            finally:
                gate.release()

        started = time.monotonic()
        threads = []
        for _ in range(args.jobs):
            gate.acquire()
            thread = threading.Thread(target=one)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        report = {
            "jobs": len(results), "in_flight": args.in_flight, "poll_interval_s": args.poll_interval,
            "seconds": round(time.monotonic() - started, 1),
            "sse": summarize([r["sse_ms"] for r in results]),
            "poll": summarize([r["poll_ms"] for r in results]),
        }
        print(json.dumps(report, indent=2))
        return 0
    finally:
        if web is not None:
            web.stop()
        stack.stop()
        redis.stop()
        with stack.app.app_context():
            from pipeline.store.models import db
            db.engine.dispose()
        services.drop_database(db_url)


if __name__ == "__main__":
    raise SystemExit(main())
