"""Recovery times on a private stack (own Redis, own Postgres database, own workers).

    .venv/bin/python -m tests.bench.recovery [--runs 3] [--lease-s S] [--reaper-s S] [--jobs 20]

Without --lease-s/--reaper-s the stack runs genline's defaults (pipeline/config.py).
Measures
- pool child SIGKILLed mid-generate -> the job completed (requeue on worker lost);
- whole worker (main + children) SIGKILLed mid-generate, a second worker already
  running -> the job completed there (lease expiry + reaper);
- Redis SIGKILLed and restarted empty with jobs queued and running -> every job terminal;
- the active beat SIGKILLed, a standby beat running -> the standby sends the
  reaper, and the reaper sends a job whose message was lost meanwhile.
The lease and reaper interval bound the second and third: expect about
lease_s + reaper_s + the job's own remaining run time. The beat's lock timeout
and loop interval (pipeline/worker/celery_app.py) bound the fourth.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

from pipeline.config import Config
from tests import services
from tests.conftest import TERMINAL, Stack, base_env
from tests.sends import sends_refused
from tests.test_recovery import children, generate_starts

LATENCY_S = 2.0
WHOLE_WORKER_LATENCY_S = 20.0
"""Long enough for the rescuer worker to boot while the victim is still generating."""


def build(args, log_dir: Path):
    redis = services.RedisServer().start()
    db_url = services.create_database()
    # "" unsets a variable: the process then runs genline's default.
    env = base_env(db_url, redis.url, (log_dir / f"out-{os.urandom(3).hex()}").as_uri(),
                   GENLINE_LEASE_S=args.lease_s or "", GENLINE_REAPER_INTERVAL_S=args.reaper_s or "")
    stack = Stack(env, log_dir, redis)
    stack.migrate()
    return stack, redis, db_url


def teardown(stack, redis, db_url):
    stack.stop()
    redis.stop()
    with stack.app.app_context():
        from pipeline.store.models import db
        db.engine.dispose()
    services.drop_database(db_url)


def until(predicate, timeout=180, interval=0.02):
    """``services.wait_for`` that returns when the predicate came true (a monotonic time)."""
    services.wait_for(predicate, timeout, "the recovery step", interval)
    return time.monotonic()


def submit(stack, headers, latency_s: float = LATENCY_S):
    body = {"prompt": "bench", "params": {"size": "32x32", "simulate": {"latency_s": latency_s}}}
    return stack.submit(headers, body)["id"]


def completed(stack, headers, job_id):
    return stack.job(headers, job_id)["status"] == "completed"


def child_kill(stack, headers) -> tuple[float, float]:
    """(kill -> generate restarted, kill -> completed) for one job."""
    worker = stack.processes[0]
    job_id = submit(stack, headers)
    until(lambda: generate_starts(stack, job_id) >= 1)
    for child in children(worker.pid):
        os.kill(child, signal.SIGKILL)
    killed = time.monotonic()
    restarted = until(lambda: generate_starts(stack, job_id) >= 2) - killed
    return restarted, until(lambda: completed(stack, headers, job_id)) - killed


def all_terminal(stack, headers, ids, restart: bool) -> float:
    """Seconds from the moment the first job runs (and Redis is restarted, if asked) to all terminal."""
    until(lambda: generate_starts(stack, ids[0]) >= 1)
    if restart:
        stack.redis.restart()
    start = time.monotonic()
    until(lambda: all(stack.job(headers, j)["status"] in TERMINAL for j in ids), timeout=600, interval=0.1)
    return time.monotonic() - start


def redis_restart(stack, headers, count: int) -> tuple[float, float]:
    """(baseline: same jobs, no restart; with Redis SIGKILLed and restarted) seconds to all terminal."""
    baseline = all_terminal(stack, headers, [submit(stack, headers) for _ in range(count)], restart=False)
    restarted = all_terminal(stack, headers, [submit(stack, headers) for _ in range(count)], restart=True)
    return baseline, restarted


def beat_takeover(stack, headers) -> tuple[float, float]:
    """(kill -> the standby sent the reaper, kill -> a job lost after the kill started)."""
    active = services.start_beat(stack.env, stack.log_dir)
    standby = services.start_beat(stack.env, stack.log_dir, active=False)
    stack.processes += [active, standby]
    time.sleep(3)
    active.kill_group()
    killed = time.monotonic()
    with sends_refused(stack.env["REDIS_URL"]):
        job_id = submit(stack, headers, latency_s=0)
    took_over = until(lambda: "Sending due task reap" in standby.log(), timeout=60) - killed
    resent = until(lambda: len(stack.events(job_id)) >= 2, timeout=60) - killed
    standby.stop()
    return took_over, resent


def summary(values):
    return {"runs": len(values), "median_s": round(statistics.median(values), 2),
            "min_s": round(min(values), 2), "max_s": round(max(values), 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--lease-s", type=float, default=None, help="GENLINE_LEASE_S (default: genline's)")
    p.add_argument("--reaper-s", type=float, default=None, help="GENLINE_REAPER_INTERVAL_S (default: genline's)")
    p.add_argument("--jobs", type=int, default=20, help="jobs in flight at the Redis restart")
    args = p.parse_args(argv)
    services.ensure_postgres()
    log_dir = Path(tempfile.mkdtemp(prefix="genline-bench-recovery-"))
    defaults = Config.from_env({})
    results = {"lease_s": args.lease_s or defaults.lease_s, "reaper_interval_s": args.reaper_s or defaults.reaper_interval_s,
               "job_latency_s": LATENCY_S}

    stack, redis, db_url = build(args, log_dir)
    try:
        headers = stack.new_tenant()
        stack.start_worker(concurrency=1, name="beats")
        takeovers = [beat_takeover(stack, headers) for _ in range(args.runs)]
        results["beat_sigkill_to_standby_sends_reaper"] = summary([t[0] for t in takeovers])
        results["beat_sigkill_to_lost_job_sent_again"] = summary([t[1] for t in takeovers])
        stack.stop()
        stack.start_worker(concurrency=1, name="standing")
        stack.start_beat()
        child = [child_kill(stack, headers) for _ in range(args.runs)]
        results["pool_child_sigkill_to_generate_restarted"] = summary([c[0] for c in child])
        results["pool_child_sigkill_to_completed"] = summary([c[1] for c in child])
        # Whole worker: the victim takes the job, a rescuer is started and ready, then the victim
        # and its children are SIGKILLed. Reported: kill -> generate restarted elsewhere, and
        # kill -> completed (which includes the job's own LATENCY_S run again).
        stack.processes[0].stop()
        times, restarts = [], []
        for _ in range(args.runs):
            victim = stack.start_worker(concurrency=1, name="victim")
            job_id = submit(stack, headers, latency_s=WHOLE_WORKER_LATENCY_S)
            until(lambda: generate_starts(stack, job_id) >= 1)
            rescuer = stack.start_worker(concurrency=1, name="rescuer")
            if completed(stack, headers, job_id) or generate_starts(stack, job_id) != 1:
                rescuer.stop()
                continue  # the job ended before the rescuer was up; not a measurement
            victim.kill_group()
            killed = time.monotonic()
            restarts.append(until(lambda: generate_starts(stack, job_id) >= 2) - killed)
            times.append(until(lambda: completed(stack, headers, job_id)) - killed)
            rescuer.stop()
        results["worker_sigkill_to_generate_restarted_elsewhere"] = summary(restarts)
        results["worker_sigkill_to_completed_elsewhere"] = summary(times)
        stack.start_worker(concurrency=2, name="redis-a")
        redis_runs = [redis_restart(stack, headers, args.jobs) for _ in range(max(1, args.runs // 2))]
        results["same_jobs_without_restart_all_terminal"] = summary([r[0] for r in redis_runs])
        results["redis_restart_to_all_terminal"] = summary([r[1] for r in redis_runs])
        results["redis_restart_jobs"] = args.jobs
    finally:
        teardown(stack, redis, db_url)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
