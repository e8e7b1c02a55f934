"""`genline bench`: run every phase against genline and the raw baselines, then report.

Phases, in order: warm-up; submit load at the client concurrency (those jobs
also give the throughput at saturation, since submit outruns the workers);
end to end one job at a time over ``Prefer: wait`` and over SSE, tiny and real
size; notify latency; then the baselines (bare Flask submit, raw chain end to
end and throughput) on the same Redis server and worker settings.
"""
from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager

from pipeline.bench import baseline, load, report
from pipeline.bench.stack import LocalStack

TINY = "16x16"


@contextmanager
def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    progress = Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True), disable=not enabled, transient=False)
    with progress:
        yield progress


def _phase(progress, name: str, total: int):
    task = progress.add_task(name, total=total)
    return lambda *_: progress.advance(task), lambda done: progress.update(task, completed=done)


def measure_genline(client: load.Client, a, progress, notes: list[str]) -> dict:
    m = {}
    advance, _ = _phase(progress, "warm-up", a.workers * 2)
    load.e2e_wait(client, a.workers * 2, TINY, advance)
    advance, _ = _phase(progress, f"submit x{a.concurrency}", a.jobs)
    m["submit"] = load.timed_posts(client, "/v1/jobs", a.jobs, a.concurrency, load.job_body(TINY), advance)
    if m["submit"]["errors"]:
        notes.append(f"{m['submit']['errors']} submits failed (HTTP {m['submit']['statuses']})")
    ids = [j["id"] for j in m["submit"]["answers"]]
    advance, _ = _phase(progress, "until all completed", len(ids))
    finals = load.final_states(client, ids, min(a.concurrency, 16), advance)
    m["throughput"] = load.throughput(finals)
    submitted, completed = len(ids), sum(j["status"] == "completed" for j in finals)
    for key, size, n in (("e2e_wait", TINY, a.e2e_jobs), ("real_wait", a.real_size, a.real_jobs)):
        advance, _ = _phase(progress, f"e2e {size} ?wait", n)
        m[key] = load.e2e_wait(client, n, size, advance)
        submitted, completed = submitted + n, completed + len(m[key])
    # An SSE stream of a job that already completed replays its events and closes:
    # a cheap probe of whether this deployment serves SSE at all.
    has_sse = bool(ids) and client.events(ids[0], lambda *_: None)
    m["e2e_sse"] = m["real_sse"] = m["notify"] = None
    if has_sse:
        for key, size, n in (("e2e_sse", TINY, a.e2e_jobs), ("real_sse", a.real_size, a.real_jobs)):
            advance, _ = _phase(progress, f"e2e {size} SSE", n)
            m[key] = load.e2e_sse(client, n, size, advance) or []
            submitted, completed = submitted + n, completed + len(m[key])
        advance, _ = _phase(progress, "notify", a.notify_jobs)
        m["notify"] = load.notify_latencies(client, a.notify_jobs, min(8, a.concurrency), advance)
        submitted, completed = submitted + a.notify_jobs, completed + len(m["notify"])
    else:
        notes.append("GET /v1/jobs/{id}/events is not served by this deployment: SSE and notify figures are null")
    m["jobs_submitted"], m["jobs_completed"] = submitted, completed
    return m


def measure_baseline(stack: LocalStack, a, progress) -> dict:
    baseline.configure(stack.baseline_redis_url)
    flask = load.Client(stack.baseline_url, None)
    advance, _ = _phase(progress, "baseline warm-up", 10)
    baseline.chain_latencies(5, advance)
    load.timed_posts(flask, "/v1/jobs", 5, 5, load.job_body(TINY), advance)
    advance, _ = _phase(progress, f"bare Flask x{a.concurrency}", a.jobs)
    out = {"flask": load.timed_posts(flask, "/v1/jobs", a.jobs, a.concurrency, load.job_body(TINY), advance)}
    advance, _ = _phase(progress, "raw chain e2e", a.e2e_jobs)
    out["chain"] = baseline.chain_latencies(a.e2e_jobs, advance)
    _, update = _phase(progress, "raw chain throughput", a.jobs)
    out["chains_s"], out["chains_completed"] = baseline.chain_throughput(a.jobs, update)
    return out


def _interrupt(*_):
    raise KeyboardInterrupt


def run(a) -> int:
    """Run the bench with parsed arguments ``a``; print the report; 0 when every job completed."""
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
            m = measure_genline(client, a, progress, notes)
            if a.no_baseline:
                m.update(flask=None, chain=[], chains_s=None)
                notes.append("baselines skipped (--no-baseline): ratios are null")
            else:
                m.update(measure_baseline(stack, a, progress))
            if a.url:
                notes.append("baselines ran on this machine's own Redis, not on the deployment's")
    finally:
        if stack is not None:
            stack.stop()
    settings = {"url": a.url or "local", "workers": a.workers, "web_workers": a.web_workers,
                "concurrency": a.concurrency, "jobs": a.jobs, "e2e_jobs": a.e2e_jobs, "real_size": a.real_size,
                "database": "given" if a.url else ("postgres" if a.database_url else "sqlite"), "cpus": os.cpu_count()}
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
