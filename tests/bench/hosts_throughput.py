"""Throughput across worker hosts: jobs/s with 1, 2, 3 worker hosts of a fixed capacity each,
on the multi-host bed (tests/multihost/bed.py).

    .venv/bin/python -m tests.bench.hosts_throughput [--hosts 1,2,3] [--kind compute] [--latency-s 3]
        [--concurrency 4] [--rounds 8] [--repeat 1]

Needs root (network namespaces). One bed: a data host (a private Postgres cluster, Redis,
moto's S3), a web host (gunicorn, beat), a provider host (tests/multihost/recorder.py: the
``http`` provider's protocol, answering after L seconds) and as many worker hosts as the
largest ``--hosts``. A worker host's capacity is fixed, ``--concurrency`` jobs at once:

- ``--kind compute`` (default): a compute worker ``-c N`` (prefork) runs generate with the
  local provider's ``simulate.latency_s = L``, beside an I/O worker ``-c 50`` for the other
  steps; the provider host is idle;
- ``--kind io``: one I/O worker (gevent) ``-c N`` runs every step, generate calling the
  provider host, which answers after L seconds.

Either way a host does at best N / L jobs/s. genline's default lease and reaper settings;
no tenant-concurrency cap in the way (GENLINE_TENANT_CONCURRENCY above every job submitted).

Worker hosts start on standby (consuming a queue of their own). For each k in ``--hosts``:
``--rounds`` x N x k jobs are submitted (the full queue), then k hosts are pointed at their
kinds' queues at once (Celery's remote control), every job is waited for, and the hosts go
back to standby once the queues are empty. The steady window: from the completion of the
first round's last job (the (k x N)-th completion: warm-up excluded) to the completion one
round before the last (the (n - k x N)-th: the drain, when slots start to idle, excluded);
jobs/s = the least-squares slope of completions over time in that window (``completed_at``
of the job rows; ``jobs_per_s_window_ends``: completions in the window / its length).
Reported for each k: jobs/s, its ratio to the ideal k x N / L, the CPU the bed's processes
and the whole machine used in the window (cores), jobs per host; and the scaling ratio
jobs/s(k) / (k x jobs/s(1)), target >= 0.9. ``--repeat R`` runs the sweep R times on the
same bed (medians reported). Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import redis as redis_lib

from pipeline.adapters import routing
from pipeline.config import Config
from tests import services
from tests.multihost import bed as mh
from tests.multihost import netns
from tests.multihost.api import TERMINAL, Api
from tests.multihost.hostservices import db_cursor
from web import create_app

TARGET = 0.9
IO_CONCURRENCY = 50
"""The I/O worker's -c on each host when the compute slots are the capacity: never the bottleneck."""
KIND_QUEUES = {"io": routing.IO_QUEUES, "compute": routing.COMPUTE_QUEUES}


class Bench:
    """The bed's services, worker hosts on standby, and what the bench reads from them."""

    def __init__(self, bed: mh.Bed, hosts: int, kind: str, concurrency: int, jobs: int):
        self.bed, self.kind = bed, kind
        data, web, provider = bed.host("data"), bed.host("web"), bed.host("provider")
        provider_url, self.recorder = mh.start_recorder(provider)
        self.env = mh.stack_env(mh.start_postgres(data), mh.start_redis(data), *mh.start_s3(data),
                                GENLINE_HTTP_PROVIDER_URL=f"{provider_url}/infer",
                                GENLINE_HTTP_PROVIDER_TOKEN=mh.PROVIDER_TOKEN,
                                GENLINE_TENANT_CONCURRENCY=jobs + 100)
        mh.migrate(web, self.env)
        self.url = mh.start_web(web, self.env)
        mh.start_beat(web, self.env)
        self.workers = [bed.host(f"w{i + 1}") for i in range(hosts)]
        # Each host: the I/O worker (validate, upload, notify, periodic tasks; with --kind io also
        # generate, then its -c is the host's capacity) and, with --kind compute, the compute worker.
        self.kinds = {"io": concurrency if kind == "io" else IO_CONCURRENCY}
        if kind == "compute":
            self.kinds["compute"] = concurrency
        self.procs = {(h.name, k): mh.start_worker(h, k, self.env, c, queues=f"standby.{h.name}", ready=False)
                      for h in self.workers for k, c in self.kinds.items()}
        for proc in self.procs.values():
            proc.wait_for_log("ready.", 240)
        self.app = create_app(Config.from_env(self.env))
        self.redis = redis_lib.Redis.from_url(self.env["REDIS_URL"])

    def db(self):
        return db_cursor(self.env["DATABASE_URL"])

    def point(self, hosts: list[mh.Host], consume: bool) -> None:
        """Point ``hosts``' workers at their kinds' queues (``consume``) or back to standby, all at once."""
        control = self.app.extensions["celery"].control
        call = control.add_consumer if consume else control.cancel_consumer
        for kind in self.kinds:
            names = [f"{kind}@{h.name}" for h in hosts]
            for queue in KIND_QUEUES[kind]:
                replies = call(queue, destination=names, reply=True, timeout=10)
                assert len(replies) == len(names), f"{queue}: only {replies} answered of {names}"

    def queues_empty(self) -> bool:
        """No step message waits in a queue, none is reserved by a worker (kombu's unacked hash)."""
        keys = [*self.redis.scan_iter("io.*"), *self.redis.scan_iter("compute.*")]
        return sum(self.redis.llen(k) for k in keys) == 0 and self.redis.hlen("unacked") == 0

    def completed_at(self, ids: list[str]) -> tuple[list[float], int]:
        """Sorted completion times (epoch seconds) of the completed jobs, and how many ended otherwise."""
        with self.db() as cur:
            cur.execute("SELECT status, extract(epoch FROM completed_at AT TIME ZONE 'UTC') AS t "
                        "FROM jobs WHERE id = ANY(%s)", (ids,))
            rows = cur.fetchall()
        return sorted(float(r["t"]) for r in rows if r["status"] == "completed"), \
            sum(r["status"] != "completed" for r in rows)

    def terminal(self, ids: list[str]) -> int:
        with self.db() as cur:
            cur.execute("SELECT count(*) AS n FROM jobs WHERE id = ANY(%s) AND status = ANY(%s)", (ids, list(TERMINAL)))
            return cur.fetchone()["n"]

    def hosts_of(self, ids: list[str]) -> dict[str, int]:
        """How many of the jobs' generate steps each worker host finished (its workers' logs)."""
        counts = {}
        for host in self.workers:
            logs = "".join(self.procs[(host.name, k)].log() for k in self.kinds)
            counts[host.name] = sum(f"step finished job_id={i} step=generate" in logs for i in ids)
        return {name: n for name, n in counts.items() if n}


class CpuSampler:
    """CPU seconds of every process of the bed, and of the whole machine, sampled every 0.25 s."""

    def __init__(self, bed: mh.Bed):
        self.bed = bed
        self.samples: list[tuple[float, float, float]] = []  # (time, bed CPU s, machine busy CPU s)
        self._procs: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _bed_cpu(self) -> float:
        total = 0.0
        for host in self.bed.hosts.values():
            for pid in netns.netns_pids(host.ns):
                try:
                    proc = self._procs.setdefault(pid, psutil.Process(pid))
                    t = proc.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            machine = psutil.cpu_times()
            busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq + machine.steal
            self.samples.append((time.time(), self._bed_cpu(), busy))
            self._stop.wait(0.25)

    def start(self) -> CpuSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def cores(self, start: float, end: float) -> dict:
        """Cores used between ``start`` and ``end``: the bed's processes, and the machine as a whole."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return {"bed_cpu_cores": None, "machine_busy_cores": None}
        (t0, b0, m0), (t1, b1, m1) = inside[0], inside[-1]
        return {"bed_cpu_cores": round((b1 - b0) / (t1 - t0), 3), "machine_busy_cores": round((m1 - m0) / (t1 - t0), 3)}


def steady_rate(times: list[float], per_round: int) -> tuple[int, float, float, float]:
    """Between the per_round-th and the (n - per_round)-th completion: (completions, seconds,
    jobs/s from the two ends, jobs/s as the least-squares slope of completions over time).

    The slope uses every completion of the window, so one late or early completion at
    either end moves it less than it moves the two-ends rate."""
    first, last = per_round - 1, len(times) - per_round - 1
    jobs, seconds = last - first, times[last] - times[first]
    window = times[first:last + 1]
    mean_t, mean_i = statistics.fmean(window), (len(window) - 1) / 2
    slope = sum((t - mean_t) * (i - mean_i) for i, t in enumerate(window)) / sum((t - mean_t) ** 2 for t in window)
    return jobs, seconds, jobs / seconds, slope


def measure(bench: Bench, sampler: CpuSampler, k: int, args, sweep: int) -> dict:
    """One k: a full queue for k hosts, run to the end; jobs/s in the steady window."""
    per_round = k * args.concurrency
    n = args.rounds * per_round
    tag = f"k{k}s{sweep}"
    budget = {"timeout_s": args.latency_s + 60, "deadline_s": 3600, "max_attempts": 1}
    if args.kind == "io":  # the provider host answers after L seconds
        body = {"prompt": f"slow:{args.latency_s:g} {tag}", "provider": "http", "params": {"size": "16x16"},
                "budget": budget}
    else:  # the local provider computes for L seconds in a compute slot
        body = {"prompt": tag, "params": {"size": "16x16", "simulate": {"latency_s": args.latency_s}},
                "budget": budget}
    apis = [Api(bench.url) for _ in range(4)]
    with ThreadPoolExecutor(len(apis)) as pool:
        ids = list(pool.map(lambda i: apis[i % len(apis)].submit(body)["id"], range(n)))
    hosts = bench.workers[:k]
    started = time.time()
    bench.point(hosts, consume=True)
    services.wait_for(lambda: bench.terminal(ids) == n, args.rounds * (args.latency_s + 5) + 120,
                      f"{n} jobs on {k} hosts to end", interval=0.5)
    services.wait_for(bench.queues_empty, 60, "the queues to empty (every notify step ran)", interval=0.2)
    bench.point(hosts, consume=False)
    times, not_completed = bench.completed_at(ids)
    jobs, seconds, ends_rate, rate = steady_rate(times, per_round)
    ideal = per_round / args.latency_s
    return {"hosts": k, "jobs": n, "completed": len(times), "not_completed": not_completed,
            "window_jobs": jobs, "window_s": round(seconds, 3), "jobs_per_s": round(rate, 4),
            "jobs_per_s_window_ends": round(ends_rate, 4),
            "ideal_jobs_per_s": round(ideal, 4), "of_ideal": round(rate / ideal, 4),
            "all_jobs_per_s_incl_warmup_drain": round(len(times) / (times[-1] - started), 4),
            **sampler.cores(times[per_round - 1], times[len(times) - per_round - 1]),
            "jobs_by_host": bench.hosts_of(ids),
            "completed_s": [round(t - started, 3) for t in times]}  # after the hosts were pointed at the queues


def sweep(bench: Bench, sampler: CpuSampler, args, index: int) -> dict:
    runs = [measure(bench, sampler, k, args, index) for k in args.hosts]
    base = next(r["jobs_per_s"] for r in runs if r["hosts"] == 1) if 1 in args.hosts else None
    for r in runs:
        r["scaling_ratio"] = round(r["jobs_per_s"] / (r["hosts"] * base), 4) if base else None
        print(f"sweep {index + 1}: {r['hosts']} host(s) {r['jobs_per_s']:.3f} jobs/s, ratio {r['scaling_ratio']}, "
              f"bed {r['bed_cpu_cores']} cores, machine {r['machine_busy_cores']} cores", file=sys.stderr)
    return {"runs": runs}


def summary(sweeps: list[dict], hosts: list[int]) -> dict:
    """Medians over sweeps, per k, and whether every median ratio meets the target."""
    by_k = {}
    for k in hosts:
        runs = [r for s in sweeps for r in s["runs"] if r["hosts"] == k]
        ratios = [r["scaling_ratio"] for r in runs if r["scaling_ratio"] is not None]
        by_k[str(k)] = {"jobs_per_s_median": round(statistics.median(r["jobs_per_s"] for r in runs), 4),
                        "scaling_ratio_median": round(statistics.median(ratios), 4) if ratios else None,
                        "scaling_ratios": ratios,
                        "bed_cpu_cores_max": max((r["bed_cpu_cores"] or 0) for r in runs),
                        "machine_busy_cores_max": max((r["machine_busy_cores"] or 0) for r in runs)}
    medians = [v["scaling_ratio_median"] for v in by_k.values() if v["scaling_ratio_median"] is not None]
    return {"by_hosts": by_k, "target_scaling_ratio": TARGET, "met": bool(medians) and min(medians) >= TARGET}


def run(args) -> dict:
    log_dir = Path(tempfile.mkdtemp(prefix="genline-hosts-bench-"))
    largest = max(args.hosts) * args.rounds * args.concurrency
    with mh.Bed(log_dir) as bed:
        bench = Bench(bed, max(args.hosts), args.kind, args.concurrency, largest)
        sampler = CpuSampler(bed).start()
        try:
            sweeps = [sweep(bench, sampler, args, i) for i in range(args.repeat)]
        finally:
            sampler.stop()
    return {"kind": args.kind, "latency_s": args.latency_s, "concurrency_per_host": args.concurrency, "rounds": args.rounds,
            "hosts": args.hosts, "repeat": args.repeat, "cores": psutil.cpu_count(),
            "window": "from the (k x concurrency)-th to the (n - k x concurrency)-th completed_at; "
                      "jobs/s: least-squares slope of completions over time in it",
            "logs": str(log_dir), "sweeps": sweeps, **summary(sweeps, args.hosts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--hosts", type=lambda s: sorted({int(k) for k in s.split(",")}), default=[1, 2, 3],
                        help="numbers of worker hosts to measure, comma-separated (1 is the baseline)")
    parser.add_argument("--latency-s", type=float, default=3.0, help="seconds the provider takes to answer")
    parser.add_argument("--kind", choices=["compute", "io"], default="compute",
                        help="compute: each host's capacity is its compute worker's slots (local provider, "
                             "simulated latency); io: its I/O worker's -c (remote provider on the provider host)")
    parser.add_argument("--concurrency", type=int, default=4, help="each host's capacity: its --kind worker's -c")
    parser.add_argument("--rounds", type=int, default=8, help="jobs per k: rounds x concurrency x k (at least 3)")
    parser.add_argument("--repeat", type=int, default=1, help="sweeps over --hosts on the same bed")
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be at least 3 (one round of warm-up, one of drain, one measured)")
    why = netns.why_unavailable()
    if why:
        parser.exit(2, f"hosts_throughput: {why}\n")
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
