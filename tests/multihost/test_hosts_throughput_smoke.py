"""The throughput-across-hosts bench (tests/bench/hosts_throughput.py) runs on a bed and
reports well-formed figures: 1 and 2 worker hosts, a short provider latency, few jobs.
Its figures are not asserted (no timed assertion): docs/performance.md has them."""
from __future__ import annotations

import json
import subprocess
import sys

from tests import services
from tests.multihost import netns


def test_the_bench_runs_on_one_and_two_hosts_and_reports_every_figure():
    # Given a machine that can make network namespaces
    why = netns.why_unavailable()
    if why:
        services.missing(why)

    # When the bench runs for 1 and 2 worker hosts of 2 slots, 3 rounds of 0.5 s calls
    done = subprocess.run([sys.executable, "-m", "tests.bench.hosts_throughput", "--hosts", "1,2",
                           "--latency-s", "0.5", "--concurrency", "2", "--rounds", "3"],
                          cwd=services.ROOT, capture_output=True, text=True, timeout=240)

    # Then it prints one JSON object with a run per host count, every job completed on its hosts
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    [sweep] = report["sweeps"]
    assert [r["hosts"] for r in sweep["runs"]] == [1, 2]
    for r in sweep["runs"]:
        assert r["completed"] == r["jobs"] == 3 * 2 * r["hosts"] and r["not_completed"] == 0
        assert r["window_jobs"] == r["jobs"] - 2 * 2 * r["hosts"] and r["window_s"] > 0
        assert r["jobs_per_s"] > 0 and r["scaling_ratio"] > 0
        assert sum(r["jobs_by_host"].values()) == r["jobs"]
        assert set(r["jobs_by_host"]) <= {f"w{i + 1}" for i in range(r["hosts"])}
    assert sweep["runs"][0]["scaling_ratio"] == 1.0
    assert set(report["by_hosts"]) == {"1", "2"} and isinstance(report["met"], bool)
