"""Accuracy of ``estimated_finish_at`` on a steady stream with a known generate latency.

    .venv/bin/python -m tests.bench.eta_accuracy [--jobs 40] [--latency 1.0] [--interval 0.45] [--concurrency 2]

It starts its own Redis, Postgres database and one prefork worker (as the
tests do), runs a few warm-up jobs so there is history (pipeline/service/eta.py needs
``MIN_SAMPLES``), then submits ``--jobs`` jobs of ``params.simulate.latency_s``
= ``--latency``, one every ``--interval`` seconds: a little faster than the
worker drains them, so a queue builds up and the waits grow. Each job's
estimate is the one its submission answered (the first a client sees).

For each job: error = |estimated_finish_at - completed_at| / (completed_at -
created_at), the error as a fraction of the true wait. Target (issue 18):
median at most 0.15. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from tests import services
from tests.conftest import Stack, base_env


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def run(args) -> dict:
    log_dir = Path(tempfile.mkdtemp(prefix="genline-eta-bench-"))
    redis = services.RedisServer().start()
    db_url = services.create_database()
    stack = Stack(base_env(db_url, redis.url, (log_dir / "outputs").as_uri()), log_dir, redis)
    body = {"prompt": "eta", "params": {"size": "16x16", "simulate": {"latency_s": args.latency}}}
    try:
        stack.migrate()
        stack.start_worker(concurrency=args.concurrency, name="bench-eta")
        tenant = stack.new_tenant("eta")
        # Warm-up: history for the means (and a worker that has imported everything).
        warm = [stack.submit(tenant, body) for _ in range(args.warmup)]
        for job in warm:
            stack.wait(tenant, job["id"], timeout=120)

        submitted = []
        rng = random.Random(args.seed)
        due = time.monotonic()
        for _ in range(args.jobs):
            time.sleep(max(0.0, due - time.monotonic()))
            submitted.append(stack.submit(tenant, body))
            due += rng.expovariate(1 / args.interval) if args.poisson else args.interval
        done = [stack.wait(tenant, job["id"], timeout=300) for job in submitted]
        with stack.app.app_context():
            from pipeline.adapters import events
            from pipeline.service import eta
            history = {k.decode(): round(float(v), 3) for k, v in events.client().hgetall(eta.KEY).items()
                       if not k.startswith(b"last_")}
    finally:
        stack.stop()
        redis.stop()
        with stack.app.app_context():
            from pipeline.store.models import db
            db.engine.dispose()
        services.drop_database(db_url)

    errors, signed, waits, missing = [], [], [], 0
    for answer, final in zip(submitted, done):
        if final["status"] != "completed":
            raise SystemExit(f"job {final['id']} ended {final['status']}: {final['error']}")
        if answer["estimated_finish_at"] is None:
            missing += 1
            continue
        wait = _ts(final["completed_at"]) - _ts(answer["created_at"])
        signed.append((_ts(answer["estimated_finish_at"]) - _ts(final["completed_at"])) / wait)
        errors.append(abs(signed[-1]))
        waits.append(wait)
    errors.sort()
    return {
        "jobs": args.jobs, "latency_s": args.latency, "interval_s": args.interval, "poisson": args.poisson,
        "concurrency": args.concurrency,
        "without_estimate": missing,
        "true_wait_s": {"min": round(min(waits), 2), "median": round(statistics.median(waits), 2),
                        "max": round(max(waits), 2)},
        "relative_error": {"median": round(statistics.median(errors), 3),
                           "p90": round(errors[int(0.9 * (len(errors) - 1))], 3), "max": round(errors[-1], 3),
                           "signed_median": round(statistics.median(signed), 3)},
        # Each job: true wait, signed error of the finish / wait, estimated start - true start (s).
        "by_wait": [[round(w, 2), round(e, 3), round(_ts(a["estimated_start_at"]) - _ts(f["started_at"]), 2)]
                    for w, e, a, f in zip(waits, signed, submitted, done)] if args.verbose else None,
        "history": history,
        "throughput_s_per_job": round((max(_ts(j["completed_at"]) for j in done)
                                       - min(_ts(j["started_at"]) for j in done)) / len(done), 3),
        "target_median": 0.15,
        "ok": statistics.median(errors) <= 0.15 and missing == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--latency", type=float, default=1.0, help="simulated generate latency (s)")
    parser.add_argument("--interval", type=float, default=0.45, help="seconds between submissions")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--poisson", action="store_true",
                        help="exponential gaps of mean --interval (a steady random stream) instead of a fixed one")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--verbose", action="store_true", help="also each job's true wait and signed error")
    result = run(parser.parse_args())
    print(json.dumps(result, indent=2))
    raise SystemExit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
