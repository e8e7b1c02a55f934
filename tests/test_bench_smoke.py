"""`genline bench` smoke run: the report's shape, and every submitted job completed.

Not its speed: the machine is shared, so figures are only checked for being there.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from tests import services

REQUIRED_KEYS = {
    "jobs_submitted", "jobs_completed", "submit_rps", "submit_p99_ms", "submit_rps_ratio",
    "e2e_p50_ms", "e2e_p99_ms", "e2e_p50_ratio", "e2e_p99_ratio", "throughput_jobs_s",
    "throughput_ratio", "notify_p50_ms", "notify_p99_ms",
}


@pytest.mark.slow
def test_a_short_bench_run_reports_every_figure_and_completes_every_job(tmp_path):
    # Given: a redis-server on this machine (the bench starts its own stack: SQLite, gunicorn, workers)
    try:
        services.redis_server_binary()
    except services.ServiceMissing as exc:
        pytest.fail(str(exc)) if services.IN_CI else pytest.skip(f"{exc} (this fails in CI)")

    # When: a short bench run with a few dozen jobs at small concurrency, JSON out
    bench = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "bench", "--json", "--jobs", "24", "--concurrency", "4",
         "--e2e-jobs", "4", "--real-size", "64x64", "--real-jobs", "2", "--notify-jobs", "4",
         "-c", "2", "--web-workers", "1"],
        cwd=services.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        out, err = bench.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        bench.send_signal(signal.SIGTERM)  # the bench stops the stack it started on SIGTERM
        out, err = bench.communicate(timeout=60)
        pytest.fail(f"genline bench took over 240 s:\n{err[-3000:]}")

    # Then: it exits 0 with a JSON report holding every key the issue names
    assert bench.returncode == 0, err[-3000:] + out[-3000:]
    report = json.loads(out)
    assert REQUIRED_KEYS <= report.keys(), REQUIRED_KEYS - report.keys()
    # And: every job it submitted completed, and the submit phase submitted them all
    assert report["jobs_submitted"] >= 24 + 4 + 2
    assert report["jobs_completed"] == report["jobs_submitted"]
    assert report["submit_errors"] == 0
    # And: the figures and the baseline's are measured (numbers, not null), and the targets are listed
    for key in ("submit_rps", "submit_p99_ms", "e2e_p50_ms", "e2e_p99_ms", "throughput_jobs_s",
                "submit_rps_ratio", "e2e_p50_ratio", "throughput_ratio"):
        assert isinstance(report[key], (int, float)) and report[key] > 0, (key, report[key])
    assert report["baseline"]["chains_completed"] == 24
    # And: on its own stack the drain lasts until the worker is idle (notify steps run after completion)
    assert report["throughput_until"] == "worker idle"
    assert {t["key"] for t in report["targets"]} >= {"e2e_p50_ratio", "throughput_ratio", "notify_p99_ms"}
    # And: SSE is served by this build, so notify latency is measured too
    assert report["e2e_via"] == "sse" and report["notify_p50_ms"] is not None, report["notes"]
