"""`genline bench waiting`: jobs waiting on a slow remote provider, on one I/O worker
beside today's prefork worker.

A stack on this machine (its own redis-server, gunicorn, the given Postgres
database) and a local inference endpoint (``slowprovider``) that answers each
call after ``--provider-s`` seconds. For each worker in turn:

- **io**: the I/O kind as the Procfile runs it (``-P gevent``, the ``io.*``
  queues), with ``--waiting-jobs`` jobs (1,000 by default);
- **prefork**: one prefork worker on every queue (the single-worker layout, one
  process per waiting job), with ``--prefork-jobs`` jobs (8 by default);

the jobs (``provider: http``) are submitted over the API and, once their calls
are held open by the endpoint, the worker's PSS is summed over its processes
(``/proc/PID/smaps_rollup``). At that load, ``PROBES`` more jobs time out
(``timeout_s: 3`` against a call that never answers) and ``PROBES`` more are
canceled mid-call, and a few status reads time the web. Then every waiting job
must complete. Prints a table, or JSON with ``--json``; exits 1 when a job did
not complete.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid

from sqlalchemy import bindparam, create_engine, text

from pipeline.adapters import routing
from pipeline.config import fix_database_url
from pipeline.tooling.bench import load
from pipeline.tooling.bench.slowprovider import SlowProvider
from pipeline.tooling.bench.stack import LocalStack
from pipeline.tooling.localproc import wait_for

PROBES = 3
PROBE_TIMEOUT_S = 3.0
SUBMITTERS = 32


def pss_bytes(pid: int) -> int:
    """PSS of ``pid`` and every process of its group (the worker and its pool processes)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                pgid = int(f.read().rsplit(")", 1)[1].split()[2])
            if pgid != pid:
                continue
            with open(f"/proc/{entry}/smaps_rollup") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except (OSError, ValueError, StopIteration):
            continue  # a process that ended meanwhile
    return total


class Rows:
    """The job rows this bench reads directly: whether an attempt has ended, terminal counts."""

    def __init__(self, database_url: str):
        self.engine = create_engine(fix_database_url(database_url), pool_size=2)

    def lease_released(self, job_id: str) -> bool:
        with self.engine.connect() as conn:
            return bool(conn.execute(text("SELECT lease_owner IS NULL FROM jobs WHERE id = :id"),
                                     {"id": job_id}).scalar())

    def statuses(self, ids: list[str]) -> dict[str, int]:
        query = text("SELECT status, count(*) FROM jobs WHERE id IN :ids GROUP BY status").bindparams(
            bindparam("ids", expanding=True))
        with self.engine.connect() as conn:
            return dict(conn.execute(query, {"ids": ids}).all())

    def close(self) -> None:
        self.engine.dispose()


def _submit_all(client: load.Client, body: dict, n: int) -> tuple[list[str], int]:
    answers, _ = load.concurrent(n, min(SUBMITTERS, max(1, n)), lambda _i: client.submit(body))
    ids = [job["id"] for status, job in answers if status == 202 and job]
    return ids, n - len(ids)


def _job(client: load.Client, job_id: str) -> dict:
    status, job = client.request("GET", f"/v1/jobs/{job_id}")
    if status != 200 or not job:
        raise RuntimeError(f"GET /v1/jobs/{job_id} answered {status}")
    return job


def _timed_read(client: load.Client, job_id: str) -> float:
    start = time.perf_counter()
    _job(client, job_id)
    return time.perf_counter() - start


def _timeouts(client: load.Client, tag: str) -> list[float | None]:
    """Seconds past its ``timeout_s`` at which each probe's only attempt ended (None: it did not fail timeout)."""
    body = {"prompt": f"hang timeout-probe-{tag}", "provider": "http", "params": {"size": "16x16"},
            "budget": {"timeout_s": PROBE_TIMEOUT_S, "deadline_s": 120, "max_attempts": 1}}
    ids, _ = _submit_all(client, body, PROBES)
    late: list[float | None] = []
    for job_id in ids:
        job = wait_for(lambda job_id=job_id: (j := _job(client, job_id))["status"] in load.TERMINAL and j, 120,
                       "a timeout probe")
        if job["status"] != "failed" or not job["started_at"] or not job["completed_at"]:
            late.append(None)
            continue
        late.append(round(load.epoch(job["completed_at"]) - load.epoch(job["started_at"]) - PROBE_TIMEOUT_S, 3))
    return late


def _cancels(client: load.Client, provider: SlowProvider, rows: Rows, tag: str) -> tuple[list, list]:
    """Per probe: cancel -> the provider sees the call's connection closed (None: not within 5 s),
    and cancel -> the attempt ended (its lease released)."""
    closed, ended = [], []
    for n in range(PROBES):
        prompt = f"hang cancel-probe-{tag}-{n}"
        status, job = client.submit({"prompt": prompt, "provider": "http", "params": {"size": "16x16"}})
        if status != 202:
            raise RuntimeError(f"a cancel probe's submit answered {status}")
        wait_for(lambda prompt=prompt: provider.seen(prompt), 60, "the cancel probe's call")
        asked = time.monotonic()
        client.request("POST", f"/v1/jobs/{job['id']}/cancel")
        wait_for(lambda job=job: rows.lease_released(job["id"]), 60, "the canceled attempt to end", 0.005)
        ended.append(round(time.monotonic() - asked, 3))
        call = provider.seen(prompt)[0]
        try:
            wait_for(lambda call=call: "closed_at" in call, 5, "the call closed", 0.005)
            closed.append(round(call["closed_at"] - asked, 3))
        except TimeoutError:
            closed.append(None)
    return closed, ended


def measure(stack: LocalStack, client: load.Client, provider: SlowProvider, rows: Rows, kind: str, jobs: int,
            provider_s: float, progress=lambda _msg: None) -> dict:
    """Run ``jobs`` waiting jobs on one worker of ``kind`` (``io`` or ``prefork``); its figures."""
    if kind == "io":
        pool, queues, concurrency = "gevent", routing.IO_QUEUES, jobs + 2 * PROBES + 10
    else:
        pool, queues, concurrency = "prefork", routing.ALL_QUEUES, jobs + PROBES
    tag = uuid.uuid4().hex[:8]
    progress(f"{kind}: starting the worker (-P {pool} -c {concurrency})")
    worker = stack.start_worker(pool=pool, queues=queues, concurrency=concurrency)
    try:
        time.sleep(2)  # its pool processes settle
        idle = pss_bytes(worker.pid)
        prompt = f"slow:{provider_s:g} waiting-{tag}"
        body = {"prompt": prompt, "provider": "http", "params": {"size": "16x16"},
                "budget": {"timeout_s": provider_s + 60, "deadline_s": provider_s + 600}}
        progress(f"{kind}: submitting {jobs} jobs")
        started = time.monotonic()
        ids, submit_errors = _submit_all(client, body, jobs)
        peak = {"n": 0}

        def all_waiting():
            peak["n"] = max(peak["n"], provider.waiting(prompt))
            return peak["n"] >= len(ids)
        try:
            wait_for(all_waiting, provider_s, "every call held open", 0.1)
        except TimeoutError:
            pass  # the first calls were answered before the last arrived: report the peak
        all_in_flight_s = round(time.monotonic() - started, 1)
        time.sleep(1)
        loaded, in_flight = pss_bytes(worker.pid), provider.waiting(prompt)
        progress(f"{kind}: {in_flight} jobs waiting; status reads, timeout and cancel probes")
        reads = [_timed_read(client, ids[i % len(ids)]) for i in range(20)] if ids else []
        timeouts = _timeouts(client, tag)
        closed, ended = _cancels(client, provider, rows, tag)
        progress(f"{kind}: waiting for every job to complete")
        wait_for(lambda: sum(rows.statuses(ids).get(s, 0) for s in load.TERMINAL) == len(ids),
                 provider_s + 600, "every waiting job to end", 0.5)
        counts = rows.statuses(ids)
    finally:
        stack.stop_process(worker)
    mb = 2 ** 20
    return {
        "kind": kind, "pool": pool, "concurrency": concurrency, "jobs": jobs, "submit_errors": submit_errors,
        "in_flight": in_flight, "in_flight_peak": peak["n"], "all_in_flight_after_s": all_in_flight_s,
        "pss_idle_mb": round(idle / mb, 1), "pss_loaded_mb": round(loaded / mb, 1),
        "pss_per_waiting_job_mb": round(loaded / mb / max(1, in_flight), 3),
        "pss_added_per_waiting_job_mb": round((loaded - idle) / mb / max(1, in_flight), 3),
        "status_read_p50_ms": round((load.pct(reads, 50) or 0.0) * 1000, 1) if reads else None,
        "status_read_max_ms": round(max(reads) * 1000, 1) if reads else None,
        "timeout_late_s": timeouts, "cancel_to_connection_closed_s": closed, "cancel_to_attempt_ended_s": ended,
        "completed": counts.get("completed", 0), "all_completed": counts.get("completed", 0) == jobs,
    }


def _interrupt(*_):
    raise KeyboardInterrupt


def run(a) -> int:
    """`genline bench waiting` with parsed arguments ``a``."""
    if not (a.database_url or "").startswith("postgres"):
        print("genline bench waiting: needs --database-url of a Postgres database: a thousand jobs in flight "
              "at once are more writers than SQLite serves", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    provider = SlowProvider().start()
    env = {"GENLINE_HTTP_PROVIDER_URL": provider.url, "GENLINE_HTTP_PROVIDER_TOKEN": provider.token,
           "GENLINE_LOG_LEVEL": "WARNING"}
    stack = LocalStack(0, a.web_workers, a.database_url, extra_env=env)
    rows = Rows(a.database_url)
    say = (lambda msg: print(f"genline bench waiting: {msg}", file=sys.stderr, flush=True)) if not a.json else (
        lambda _msg: None)
    try:
        say("starting the stack")
        stack.start(genline=True, baseline=False)
        client = load.Client(stack.url, stack.key, connections=SUBMITTERS + 8)
        result = {"provider_s": a.provider_s, "cpus": os.cpu_count(),
                  "io": measure(stack, client, provider, rows, "io", a.waiting_jobs, a.provider_s, say),
                  "prefork": measure(stack, client, provider, rows, "prefork", a.prefork_jobs, a.provider_s, say)}
    finally:
        stack.stop()
        rows.close()
        provider.stop()
    print(json.dumps(result, indent=2) if a.json else table(result))
    return 0 if result["io"]["all_completed"] and result["prefork"]["all_completed"] else 1


ROWS = [
    ("jobs waiting at once (calls held open)", "in_flight"),
    ("worker PSS, idle (MB)", "pss_idle_mb"),
    ("worker PSS, all jobs waiting (MB)", "pss_loaded_mb"),
    ("PSS per waiting job (MB)", "pss_per_waiting_job_mb"),
    ("PSS added per waiting job (MB)", "pss_added_per_waiting_job_mb"),
    ("GET /v1/jobs/{id} at that load, p50 / max (ms)", ("status_read_p50_ms", "status_read_max_ms")),
    ("timeout: attempt ended past its 3 s limit (s)", "timeout_late_s"),
    ("cancel -> attempt ended (s)", "cancel_to_attempt_ended_s"),
    ("cancel -> provider saw the call closed (s)", "cancel_to_connection_closed_s"),
    ("jobs completed", ("completed", "jobs")),
]


def _cell(row: dict, key) -> str:
    if isinstance(key, tuple):
        return " / ".join(str(row[k]) for k in key)
    value = row[key]
    if isinstance(value, list):
        return ", ".join("n/a" if v is None else f"{v:g}" for v in value)
    return str(value)


def table(result: dict) -> str:
    io, pre = result["io"], result["prefork"]
    head = (f"{'':48} {'I/O worker (-P gevent -c ' + str(io['concurrency']) + ')':>34} "
            f"{'prefork worker (-c ' + str(pre['concurrency']) + ')':>30}")
    lines = [f"jobs waiting on a provider that answers after {result['provider_s']:g} s", head]
    lines += [f"{label:48} {_cell(io, key):>34} {_cell(pre, key):>30}" for label, key in ROWS]
    return "\n".join(lines)
