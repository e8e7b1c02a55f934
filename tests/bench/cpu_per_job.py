"""Where the machine's CPU goes while a full queue drains: genline per job, the raw chain per chain.

    .venv/bin/python -m tests.bench.cpu_per_job --database-url postgresql://…/an_empty_db [--jobs 600]

The same stack as ``genline bench`` (its own Redis, gunicorn, a prefork worker
``-c 2``, the raw-chain baseline). genline: the worker is stopped, ``--jobs``
tiny jobs are submitted, then a worker is started and drains them (until its
queues are empty, notify steps included); the raw
chain: ``--jobs`` chains are sent and drained. Around each drain it reads the
CPU time (user + system) of every process by group: each worker's main
process and its pool processes, the Postgres backends of this database, each
web, Redis, and this process (the bench's own polling). Prints ms of CPU per
job (per chain) and the drain rate, so a throughput ratio can be read as a
CPU budget: at the same machine load, a ratio of 0.6 needs genline's total
per job within 1/0.6 of the chain's.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import psutil

from pipeline.tooling.bench import baseline, load
from pipeline.tooling.bench.stack import LocalStack


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
        return times.user + times.system
    except psutil.Error:
        return 0.0


def cpu_by_group(stack: LocalStack, database: str) -> dict[str, float]:
    """Seconds of CPU so far of each group of this stack's processes."""
    groups: dict[str, float] = {"bench (this process)": _cpu(psutil.Process())}
    for started in stack.processes:
        if started.proc is None or started.proc.poll() is not None:
            continue
        main = psutil.Process(started.proc.pid)
        worker = started.name.endswith("worker")
        name = f"{started.name} main" if worker else started.name
        groups[name] = groups.get(name, 0.0) + _cpu(main)
        for child in main.children(recursive=True):
            key = f"{started.name} pool processes" if worker else name
            groups[key] = groups.get(key, 0.0) + _cpu(child)
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if line.startswith("postgres: ") and f" {database} " in line:
            groups["postgres backends"] = groups.get("postgres backends", 0.0) + _cpu(proc)
    return groups


def _per_unit(before: dict, after: dict, units: int) -> dict[str, float]:
    out = {k: round((after.get(k, 0.0) - before.get(k, 0.0)) * 1000 / units, 2) for k in after}
    out = {k: v for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v > 0}
    out["total"] = round(sum(out.values()), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True, help="an empty Postgres database")
    parser.add_argument("--jobs", type=int, default=600)
    a = parser.parse_args()
    database = a.database_url.rsplit("/", 1)[1]
    stack = LocalStack(2, 2, a.database_url).start()
    try:
        client = load.Client(stack.url, stack.key, 40)
        load.e2e_wait(client, 4, "16x16", lambda: None)  # warm-up
        baseline.configure(stack.baseline_redis_url)
        baseline.chain_latencies(5)
        for started in [p for p in stack.processes if p.name == "worker"]:
            started.stop()
            stack.processes.remove(started)
        ids = [j["id"] for j in load.timed_posts(client, "/v1/jobs", a.jobs, 16, load.job_body("16x16"),
                                                 lambda: None)["answers"]]
        stack.start_worker()
        ready, before = time.time(), cpu_by_group(stack, database)
        load.wait_drained(client, ids)
        idle_at = stack.wait_genline_idle()  # the notify steps run after the last completion
        after = cpu_by_group(stack, database)
        finals = load.final_states(client, ids, 16, lambda: None)
        done = [load.epoch(j["completed_at"]) for j in finals if j["status"] == "completed"]
        genline = {"jobs": len(ids), "completed": len(done),
                   "jobs_s_from_worker_ready": round(len(done) / (idle_at - ready), 1),
                   "cpu_ms_per_job": _per_unit(before, after, len(done))}
        before = cpu_by_group(stack, database)
        _rate, finished, drain = baseline.chain_throughput(a.jobs)
        after = cpu_by_group(stack, database)
        chain = {"chains": a.jobs, "completed": finished, "chains_s_drain": round(drain or 0.0, 1),
                 "cpu_ms_per_chain": _per_unit(before, after, finished)}
    finally:
        stack.stop()
    print(json.dumps({"genline": genline, "raw_chain": chain, "cpus": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
