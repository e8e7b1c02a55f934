"""`genline bench`: run every phase against genline and the raw baselines, then report.

Phases, in order: warm-up; submit load at the client concurrency (those jobs
also give the throughput at saturation, since submit outruns the workers),
then at once the bare Flask submit and the raw chain throughput; end to end
one job at a time over ``Prefer: wait`` and over SSE, tiny and real size, the
headline series alternating one genline job with one raw chain; notify
latency. A shared machine's load drifts over minutes, so each ratio's two
sides are measured as close together in time as they can be.
"""
from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.tooling.bench import baseline, load, report
from pipeline.tooling.bench.stack import LocalStack
from pipeline.tooling.bench.waiting import run as waiting

TINY = "16x16"


@contextmanager
def _progress(enabled: bool):
    progress = Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True), disable=not enabled, transient=False)
    with progress:
        yield progress


def _phase(progress, name: str, total: int):
    task = progress.add_task(name, total=total)
    return lambda *_: progress.advance(task), lambda done: progress.update(task, completed=done)


class Baseline:
    """The raw baselines of this run, measured right beside the genline figure each is compared with."""

    def __init__(self, stack: LocalStack | None):
        self.on = stack is not None and bool(stack.baseline_url)
        if self.on:
            baseline.configure(stack.baseline_redis_url)
            self.flask = load.Client(stack.baseline_url, None)

    def warm(self) -> None:
        if self.on:
            baseline.chain_latencies(5)
            load.timed_posts(self.flask, "/v1/jobs", 5, 5, load.job_body(TINY), lambda: None)

    def chain_once(self) -> float | None:
        return baseline.chain_latencies(1)[0] if self.on else None


def measure(client: load.Client, base: Baseline, a, progress, notes: list[str], idle=None) -> dict:
    """Every phase. Machines are noisy (and this one may be shared), so each baseline
    figure is taken right after its genline counterpart, and e2e samples alternate.

    ``idle()``: blocks until genline's worker has no work left, returning the time
    (None against a deployment, whose queues the bench cannot see)."""
    m = {"flask": None, "chain": [], "chains_s": None, "chains_completed": None, "chains_drain_s": None}
    advance, _ = _phase(progress, "warm-up", a.workers * 2)
    load.e2e_wait(client, a.workers * 2, TINY, advance)
    base.warm()
    advance, _ = _phase(progress, f"submit x{a.concurrency}", a.jobs)
    m["submit"] = load.timed_posts(client, "/v1/jobs", a.jobs, a.concurrency, load.job_body(TINY), advance)
    if m["submit"]["errors"]:
        notes.append(f"{m['submit']['errors']} submits failed (HTTP {m['submit']['statuses']})")
    ids = [j["id"] for j in m["submit"]["answers"]]
    _, update = _phase(progress, "until all completed", len(ids))
    load.wait_drained(client, ids, update)
    # On this machine's own stack: until the notify steps after the last completion ran
    # too. Read before anything else, so that the moment it returns is the idle moment.
    idle_at = idle() if idle else None
    m["drain_until"] = "worker idle" if idle else "last completion"
    finals = load.final_states(client, ids, min(a.concurrency, 16), lambda: None)
    m["throughput_incl_submit"] = load.throughput(finals, idle_at)
    m["throughput_drain"] = load.drain_rate(finals, idle_at)
    submitted, completed = len(ids), sum(j["status"] == load.COMPLETED for j in finals)
    if base.on:
        advance, _ = _phase(progress, f"bare Flask x{a.concurrency}", a.jobs)
        m["flask"] = load.timed_posts(base.flask, "/v1/jobs", a.jobs, a.concurrency, load.job_body(TINY), advance)
        _, update = _phase(progress, "raw chain throughput", a.jobs)
        m["chains_s"], m["chains_completed"], m["chains_drain_s"] = baseline.chain_throughput(a.jobs, update)
    # An SSE stream of a job that already completed replays its events and closes:
    # a cheap probe of whether this deployment serves SSE at all.
    has_sse = bool(ids) and client.events(ids[0], lambda *_: None)
    if not has_sse:
        notes.append("GET /v1/jobs/{id}/events is not served by this deployment: SSE and notify figures are null")
    m["e2e_sse"] = m["real_sse"] = m["notify"] = None
    series = [("e2e_wait", "wait", TINY), ("real_wait", "wait", a.real_size)]
    if has_sse:
        series += [("e2e_sse", "sse", TINY), ("real_sse", "sse", a.real_size)]
    # The headline series (tiny over SSE, else over ?wait) alternates one job with one raw chain.
    headline = "e2e_sse" if has_sse else "e2e_wait"
    for key, via, size in series:
        n = a.e2e_jobs if size == TINY else a.real_jobs
        advance, _ = _phase(progress, f"e2e {size} {'SSE' if via == 'sse' else '?wait'}", n)
        run_one = load.e2e_sse if via == "sse" else load.e2e_wait
        m[key] = []
        for _ in range(n):
            m[key] += run_one(client, 1, size, advance) or []
            if key == headline and base.on:
                m["chain"].append(base.chain_once())
        submitted, completed = submitted + n, completed + len(m[key])
    if has_sse:
        advance, _ = _phase(progress, "notify", a.notify_jobs)
        m["notify"] = load.notify_latencies(client, a.notify_jobs, min(8, a.concurrency), advance)
        submitted, completed = submitted + a.notify_jobs, completed + len(m["notify"])
    m["jobs_submitted"], m["jobs_completed"] = submitted, completed
    return m


def _interrupt(*_):
    raise KeyboardInterrupt


def run(a) -> int:
    """Run the bench with parsed arguments ``a``; print the report; 0 when every job completed."""
    if getattr(a, "scenario", "speed") == "waiting":
        return waiting(a)
    notes: list[str] = []
    # SIGTERM (a CI timeout, `timeout`) stops the stack like Ctrl-C does, not leaving its processes behind.
    signal.signal(signal.SIGTERM, _interrupt)
    key = a.key or os.environ.get("GENLINE_API_KEY")
    stack = None
    if a.url and not key:
        print("genline bench: --url needs --key or GENLINE_API_KEY", file=sys.stderr)
        return 2
    try:
        with _progress(not a.json or sys.stderr.isatty()) as progress:
            start = progress.add_task("starting the stack", total=None)
            if not a.url or not a.no_baseline:
                stack = LocalStack(a.workers, a.web_workers, a.database_url).start(genline=not a.url,
                                                                                   baseline=not a.no_baseline)
            progress.update(start, total=1, completed=1)
            client = load.Client(a.url or stack.url, key or stack.key, connections=a.concurrency + 8)
            idle = stack.wait_genline_idle if stack is not None and not a.url else None
            m = measure(client, Baseline(stack), a, progress, notes, idle)
            if a.no_baseline:
                notes.append("baselines skipped (--no-baseline): ratios are null")
            if a.url and not a.no_baseline:
                notes.append("baselines ran on this machine's own Redis, not on the deployment's")
    finally:
        if stack is not None:
            stack.stop()
    settings = {"url": a.url or "local", "workers": a.workers, "web_workers": a.web_workers,
                "concurrency": a.concurrency, "jobs": a.jobs, "e2e_jobs": a.e2e_jobs, "real_size": a.real_size,
                "database": "the deployment's" if a.url else ("postgres" if a.database_url else "sqlite"), "cpus": os.cpu_count()}
    result = report.build(m, settings, notes)
    print(report.to_json(result) if a.json else report.table(result))
    if a.plot:
        _plot(m, a.plot)
    return 0 if result["jobs_completed"] == result["jobs_submitted"] else 1


def _plot(m: dict, path: str) -> None:
    samples = {"submit": m["submit"]["latencies"], "bare Flask submit": (m.get("flask") or {}).get("latencies"),
               "e2e tiny ?wait": m["e2e_wait"], "e2e tiny SSE": m["e2e_sse"], "raw chain": m["chain"],
               "e2e real ?wait": m["real_wait"], "e2e real SSE": m["real_sse"], "notify": m["notify"]}
    try:
        report.plot(samples, path)
    except ImportError:
        print("genline bench: --plot needs matplotlib (pip install 'genline[bench]')", file=sys.stderr)
