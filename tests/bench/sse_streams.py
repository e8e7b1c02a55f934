"""Concurrent SSE streams on one web process: memory and CPU while idle, fan-out when all end.

    .venv/bin/python -m tests.bench.sse_streams [--streams 1000] [--idle-s 10] [--end cancel|complete]
    .venv/bin/python -m tests.bench.sse_streams --streams 10000        # issue 14: <= 1 GB RSS

The script raises its open-file limit (RLIMIT_NOFILE) to the hard limit, and the
stack's processes inherit it: each stream is a socket on both sides.

A private stack (own Redis, own Postgres database, ONE gunicorn gevent worker).
N jobs are submitted with no worker running, so they stay queued; one SSE client
per job opens its stream (gevent greenlets here, so the client is cheap too).
Then:
- idle: RSS of the web worker process and its CPU over ``--idle-s`` seconds;
- fan-out: ``--end cancel`` cancels every job in one bulk request (N terminal
  events in a burst); ``--end complete`` starts the workers, which complete them
  at their own pace. Latency is the terminal event's ``created_at`` to the
  client holding it; every client must receive its terminal event.
Targets: 1,000 streams in at most 250 MB RSS (issue 7); 10,000 in at most 1 GB
(issue 14); every client receiving its terminal event.
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402 - after monkey-patching, as gevent requires
import json  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import psutil  # noqa: E402

from pipeline.tooling.bench import load  # noqa: E402
from pipeline.tooling.bench.stack import LocalStack  # noqa: E402
from tests import services  # noqa: E402

TERMINAL = ("completed", "failed", "canceled")


def web_worker(stack: LocalStack) -> psutil.Process:
    """The one gunicorn worker process (the child of the gunicorn master)."""
    master = psutil.Process([p for p in stack.processes if p.name == "web"][0].proc.pid)
    return services.wait_for(lambda: master.children(), 10, "the gunicorn worker")[0]


def raise_nofile() -> int:
    """The soft open-file limit raised to the hard one (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run(args) -> dict:
    nofile = raise_nofile()
    if nofile < args.streams + 1000:  # the clients here, and the web process, each hold a socket per stream
        raise SystemExit(f"{args.streams} streams need about {args.streams + 1000} open files per process; the limit is {nofile}")
    services.ensure_postgres()
    db_url = services.create_database()
    stack = LocalStack(workers=0, web_workers=1, database_url=db_url,
                       extra_env={"GENLINE_SSE_HEARTBEAT_S": str(args.heartbeat_s),
                                  # gunicorn's gevent worker accepts at most this many clients at once
                                  "GUNICORN_WORKER_CONNECTIONS": str(args.streams + 1000)})
    try:
        stack.start(baseline=False)
        stack.workers = args.workers  # for --end complete, started later
        client = load.Client(stack.url, stack.key, connections=64)
        proc = web_worker(stack)
        rss_before = proc.memory_info().rss
        body = load.job_body("16x16")
        ids = [j["id"] for j in load.timed_posts(client, "/v1/jobs", args.streams, 32, body, lambda: None)["answers"]]
        got: dict[str, float] = {}
        opened = []

        def listen(job_id):
            def on_event(event, received):
                if event.get("type") == "queued" and job_id not in opened:
                    opened.append(job_id)
                if event.get("type") in TERMINAL:
                    got[job_id] = received - load.epoch(event["created_at"])
            client.events(job_id, on_event, timeout=args.idle_s + 600)

        greenlets = [gevent.spawn(listen, i) for i in ids]
        services.wait_for(lambda: len(opened) == len(ids), max(120, len(ids) / 20), f"{len(ids)} streams open", 0.2)
        time.sleep(1)
        cpu_start, wall_start = sum(proc.cpu_times()[:2]), time.monotonic()
        time.sleep(args.idle_s)
        idle_cpu = (sum(proc.cpu_times()[:2]) - cpu_start) / (time.monotonic() - wall_start)
        rss_idle = proc.memory_info().rss
        ended = time.time()
        if args.end == "cancel":
            # One bulk request cancels at most 1,000 jobs (pipeline.service.control.BULK_LIMIT): repeat until none is left.
            while True:
                status, answer = client.request("POST", "/v1/jobs/cancel", {"status": ["queued"]})
                assert status == 202, (status, answer)
                if answer["canceled"] < 1000:
                    break
        else:
            stack.start_worker()
        gevent.joinall(greenlets, timeout=args.idle_s + 600)
        last = max(got.values(), default=0) if got else None
        lat = list(got.values())
        return {
            "streams": len(ids), "streams_opened": len(opened), "terminal_received": len(got),
            "rss_mb_before": round(rss_before / 2**20, 1), "rss_mb_idle": round(rss_idle / 2**20, 1),
            "rss_mb_after": round(proc.memory_info().rss / 2**20, 1),
            "idle_cpu_percent": round(idle_cpu * 100, 1), "heartbeat_s": args.heartbeat_s, "end": args.end,
            "fanout_p50_ms": round(load.pct(lat, 50) * 1000, 1) if lat else None,
            "fanout_p99_ms": round(load.pct(lat, 99) * 1000, 1) if lat else None,
            "fanout_max_ms": round(last * 1000, 1) if lat else None,
            "all_ended_s": round(time.time() - ended, 2),
            "target_rss_met": rss_idle <= (250 if len(ids) <= 1000 else 1024) * 2**20 and len(got) == len(ids),
        }
    finally:
        stack.stop()
        services.drop_database(db_url)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--idle-s", type=float, default=10.0)
    p.add_argument("--heartbeat-s", type=float, default=15.0)
    p.add_argument("--end", choices=("cancel", "complete"), default="cancel")
    p.add_argument("--workers", type=int, default=2, help="-c of the worker started for --end complete")
    print(json.dumps(run(p.parse_args()), indent=2))


if __name__ == "__main__":
    main()
