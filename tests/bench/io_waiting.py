"""Jobs waiting on a slow remote provider: memory per waiting job, and timeout and cancel
latencies at that load, on the gevent I/O worker and on a prefork worker.

    .venv/bin/python -m tests.bench.io_waiting [--kind io] [--jobs 1000] [--concurrency 1000] [--provider-s 60]
    .venv/bin/python -m tests.bench.io_waiting --kind all --jobs 8 --concurrency 9    # today's prefork worker
    .venv/bin/python -m tests.bench.io_waiting --pool threads --jobs 200 --concurrency 210  # threads, to compare

A private stack (own Redis, own Postgres database, one worker). A local fake
provider server (tests/fake_providers.py) answers each generate call after
``--provider-s`` seconds. ``--jobs`` http-provider jobs are submitted; once all
of them are in flight (the server has seen every call), the worker's PSS is the
sum of /proc/PID/smaps_rollup over the worker's processes (main and children),
reported in total, per waiting job, and above the idle worker's. Then, at that
load, a few more jobs measure
- timeout: a ``hang`` call with timeout_s=3 -> the attempt's end (its failure event) minus 3 s;
- cancel: a ``hang`` call canceled -> the provider seeing its connection closed
  (the I/O worker kills the call; a prefork worker abandons the thread, so n/a),
  and -> the job's attempt ended (its lease released).
Finally every waiting job must complete. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psutil

from tests import services
from tests.conftest import private_stack
from tests.fake_providers import TOKEN, ImageServer

PROBES = 3


def pss_bytes(pid: int) -> int:
    """PSS of a process and all its children, from /proc/PID/smaps_rollup."""
    total = 0
    procs = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
    for proc in procs:
        with open(f"/proc/{proc.pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total


def parse(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def released(stack, job_id: str) -> bool:
    """The job's attempt has ended: no lease on it any more."""
    from pipeline.store import jobs
    with stack.app.app_context():
        return jobs.get(job_id).lease_owner is None


def run(args) -> dict:
    server = ImageServer().start()
    out = Path(tempfile.mkdtemp(prefix="genline-io-bench-"))
    env = {"GENLINE_HTTP_PROVIDER_URL": server.url + "/infer", "GENLINE_HTTP_PROVIDER_TOKEN": TOKEN,
           "GENLINE_TENANT_CONCURRENCY": str(args.jobs + 100), "GENLINE_LOG_LEVEL": "WARNING"}
    try:
        with private_stack(out / "outputs", out, **env) as stack:
            worker = stack.start_worker(kind=args.kind, concurrency=args.concurrency, name=f"bench-{args.kind}",
                                        pool=args.pool)
            time.sleep(2)
            idle = pss_bytes(worker.pid)
            headers = stack.new_tenant()
            prompt = f"slow:{args.provider_s:g} waiting"
            body = {"prompt": prompt, "provider": "http", "params": {"size": "16x16"},
                    "budget": {"timeout_s": args.provider_s + 60, "deadline_s": args.provider_s + 300}}
            t0 = time.monotonic()
            ids = [stack.submit(headers, body)["id"] for _ in range(args.jobs)]
            services.wait_for(lambda: len(server.seen(prompt)) >= args.jobs, args.provider_s, "every call in flight")
            in_flight_after_s = time.monotonic() - t0
            time.sleep(1)
            loaded = pss_bytes(worker.pid)
            in_flight = len(server.seen(prompt)) - sum(1 for r in server.seen(prompt) if "closed_at" in r)

            # Timeout and cancel latencies at this load (probes beyond the waiting jobs, when slots remain)
            timeouts, cancels_closed, cancels_ended = [], [], []
            if args.concurrency > args.jobs:
                tbody = {"prompt": "hang timeout-probe", "provider": "http",
                         "budget": {"timeout_s": 3, "deadline_s": 60, "max_attempts": 1}}
                probes = [stack.submit(headers, tbody)["id"] for _ in range(PROBES)]
                for job_id in probes:
                    done = stack.wait(headers, job_id, timeout=60)
                    events = stack.events(job_id)
                    started = [parse(e["created_at"]) for e in events
                               if e["type"] == "started" and e["data"].get("step") == "generate"][0]
                    timeouts.append(round(parse(done["completed_at"]) - started - 3.0, 3))
                for n in range(PROBES):
                    cprompt = f"hang cancel-probe-{n}"
                    job = stack.submit(headers, {"prompt": cprompt, "provider": "http"})
                    services.wait_for(lambda: server.seen(cprompt), 30, "the probe's call")
                    asked = time.monotonic()
                    stack.client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers)
                    services.wait_for(lambda: released(stack, job["id"]), 30, "the attempt to end")
                    cancels_ended.append(round(time.monotonic() - asked, 3))
                    [seen] = server.seen(cprompt)  # closed_at is the server's own clock reading
                    try:
                        services.wait_for(lambda: "closed_at" in seen, 5, "the call closed")
                        cancels_closed.append(round(seen["closed_at"] - asked, 3))
                    except TimeoutError:
                        cancels_closed.append(None)
            done = [stack.wait(headers, i, timeout=args.provider_s + 300) for i in ids]
            completed = sum(d["status"] == "completed" for d in done)
            return {
                "kind": args.kind, "pool": args.pool or ("gevent" if args.kind == "io" else "prefork"),
                "concurrency": args.concurrency, "jobs": args.jobs, "provider_s": args.provider_s,
                "in_flight": in_flight, "all_in_flight_after_s": round(in_flight_after_s, 1),
                "pss_idle_mb": round(idle / 2**20, 1), "pss_loaded_mb": round(loaded / 2**20, 1),
                "pss_per_waiting_job_mb": round(loaded / 2**20 / max(1, in_flight), 3),
                "pss_added_per_waiting_job_mb": round((loaded - idle) / 2**20 / max(1, in_flight), 3),
                "timeout_late_s": timeouts, "cancel_to_connection_closed_s": cancels_closed,
                "cancel_to_attempt_ended_s": cancels_ended,
                "completed": completed, "all_completed": completed == args.jobs,
            }
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["io", "all"], default="io", help="io: gevent I/O worker; all: one prefork worker")
    parser.add_argument("--pool", choices=["gevent", "threads", "prefork"], default=None,
                        help="the worker's pool instead of its kind's (threads: to compare with gevent)")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1010, help="worker -c (room for the latency probes)")
    parser.add_argument("--provider-s", type=float, default=60.0, help="seconds the fake provider takes to answer")
    services.ensure_postgres()
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
