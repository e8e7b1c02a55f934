"""Compute slot efficiency: a full queue of jobs whose generate takes L s on N compute slots.

    .venv/bin/python -m tests.bench.slots [--slots 2] [--latency-s 5] [--jobs 16]

A private stack (own Redis, own Postgres database) with the two worker kinds: a
prefork compute worker ``-c N`` and a gevent I/O worker. ``--jobs`` local jobs with
``simulate.latency_s = L`` are queued before the compute worker starts, so its
queue is full from its first task on. A Celery event receiver (the same events
Flower reads) records every task each worker ran. Reported:

- throughput: jobs / (last generate's end - first generate's start) on the compute
  worker, and its ratio to the ideal N / L (target >= 0.98); the generate step's
  mean recorded time and the per-task overhead beyond L;
- which task names the compute worker ran (target: only ``genline.generate``);
- the machine's 1-minute load average at the start and the end of the run.
Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from celery import Celery

from tests import services
from tests.conftest import private_stack


def watch_events(broker_url: str, seen: list) -> threading.Thread:
    """Collect task-started/succeeded/failed events (hostname, name, timestamp) in ``seen``
    (a daemon thread, left running until the script ends)."""
    app = Celery(broker=broker_url)
    names: dict[str, str] = {}

    def on_event(event):
        kind = event["type"]
        if kind == "task-received":
            names[event["uuid"]] = event["name"]
        if kind in ("task-received", "task-started", "task-succeeded", "task-failed"):
            seen.append({"type": kind, "uuid": event["uuid"], "hostname": event["hostname"],
                         "timestamp": event["timestamp"], "pid": event.get("pid"), "runtime": event.get("runtime")})

    def run():
        # One capture for the whole run: between two captures the fanout (Redis
        # pub/sub) subscription is gone and events published then are lost.
        with app.connection() as conn:
            receiver = app.events.Receiver(conn, handlers={"*": on_event})
            receiver.capture(limit=None, timeout=None, wakeup=False)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.names = names  # type: ignore[attr-defined]
    return thread


def breakdown(compute: list[dict], latency_s: float, slots: int) -> dict:
    """Where a compute slot's time goes besides the provider's L, from the worker's task events.

    Per slot: ``gap`` is a task's start minus the previous task's end
    (the ack, the next message's fetch and hand-off to the child), ``fetch`` the next
    task's arrival at the worker minus that end (negative when it was already reserved);
    ``in_task`` is the task's own runtime minus L (claim, recording, dispatching)."""
    tasks: dict[str, dict] = {}
    for e in compute:
        t: dict[str, float] = tasks.setdefault(e["uuid"], {})
        t[e["type"]] = e["timestamp"]
        if e.get("runtime") is not None:
            t["runtime"] = e["runtime"]
    done = sorted((t for t in tasks.values() if "task-started" in t and "runtime" in t),
                  key=lambda t: t["task-started"])
    # The events name the worker, not its pool process: a task ran on the slot that freed
    # last before it started (the one whose previous task ended closest before it).
    slot_ends: list[float | None] = [None] * slots
    gaps, fetches = [], []
    for t in done:
        end = t.get("task-succeeded") or t.get("task-failed")
        free = [i for i, e in enumerate(slot_ends) if e is None]
        if free:
            slot_ends[free[0]] = end
            continue
        started: float = t["task-started"]
        i = max(range(slots), key=lambda i: x if (x := slot_ends[i]) is not None and x <= started else float("-inf"))
        last = slot_ends[i]
        assert last is not None  # every slot has run a task by now
        gaps.append(started - last)
        if "task-received" in t:
            fetches.append(t["task-received"] - last)
        slot_ends[i] = end

    def ms(values):
        values = sorted(values)
        if not values:
            return None
        return {"mean": round(sum(values) / len(values) * 1000, 1), "p50": round(values[len(values) // 2] * 1000, 1),
                "max": round(values[-1] * 1000, 1)}
    return {"in_task_beyond_L_ms": ms([t["runtime"] - latency_s for t in done]),
            "between_tasks_ms": ms(gaps), "next_received_after_end_ms": ms(fetches)}


def run(args) -> dict:
    out = Path(tempfile.mkdtemp(prefix="genline-slots-bench-"))
    env = {"GENLINE_TENANT_CONCURRENCY": str(args.jobs + 10)}
    load_at_start = os.getloadavg()[0]
    with private_stack(out / "outputs", out, **env) as stack:
        seen: list = []
        watcher = watch_events(stack.env["REDIS_URL"], seen)
        stack.start_worker(kind="io", concurrency=100, name="io")
        time.sleep(1)
        headers = stack.new_tenant()
        body = {"prompt": "slot", "params": {"size": "16x16", "simulate": {"latency_s": args.latency_s}},
                "budget": {"timeout_s": args.latency_s + 30, "deadline_s": 3600}}
        ids = [stack.submit(headers, body)["id"] for _ in range(args.jobs)]
        # every job validated and waiting on the compute queue before the compute worker starts
        services.wait_for(lambda: all(stack.job(headers, i)["step"] == "generate" for i in ids), 120, "validation")
        stack.start_worker(kind="compute", concurrency=args.slots, name="compute")
        # Wait on the compute worker's own events, read in this process: polling the API
        # for 40-200 jobs (20 requests a second) took CPU from the slots being measured.
        def generates_ended():
            ended = sum(e["type"] in ("task-succeeded", "task-failed") for e in seen if e["hostname"].startswith("compute@"))
            return ended >= args.jobs or None
        services.wait_for(generates_ended, args.jobs * args.latency_s / args.slots + 300, "every generate", interval=0.5)
        done = [stack.wait(headers, i, timeout=120) for i in ids]
        time.sleep(2)  # the last events
        from pipeline.store import jobs
        with stack.app.app_context():
            work = [jobs.get(i).timing.get("generate_s", 0.0) for i in ids]
        names = watcher.names  # type: ignore[attr-defined]
        compute = [e for e in seen if e["hostname"].startswith("compute@")]
        starts = [e["timestamp"] for e in compute if e["type"] == "task-started"]
        ends = [e["timestamp"] for e in compute if e["type"] in ("task-succeeded", "task-failed")]
        span = max(ends) - min(starts)  # first generate's start to last generate's end on the compute worker
        throughput = args.jobs / span
        ideal = args.slots / args.latency_s
        return {
            "slots": args.slots, "latency_s": args.latency_s, "jobs": args.jobs,
            "completed": sum(d["status"] == "completed" for d in done),
            "compute_tasks_started": len(starts), "span_s": round(span, 2),
            "throughput_jobs_per_s": round(throughput, 4), "ideal_jobs_per_s": round(ideal, 4),
            "efficiency": round(throughput / ideal, 4),
            # the step's own time (claim to end, as the job row records it) beside the provider's L
            "generate_step_mean_s": round(sum(work) / len(work), 4),
            "per_task_overhead_ms": round((span * args.slots / args.jobs - args.latency_s) * 1000, 1),
            "slot_time": breakdown(compute, args.latency_s, args.slots),
            "compute_task_names": sorted({names.get(e["uuid"], "?") for e in compute}),
            # The machine's load (1-minute average) when the run began and ended: on the shared
            # 2-core machine the per-task overhead grows with it (22-33 ms at 1-2, 120-400 ms at 13-23).
            "loadavg_1m": [round(load_at_start, 2), round(os.getloadavg()[0], 2)],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--latency-s", type=float, default=5.0)
    parser.add_argument("--jobs", type=int, default=16)
    services.ensure_postgres()
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
