"""`genline bench waiting` smoke run: jobs waiting on a slow provider, on the I/O worker
beside the prefork worker, at a small scale.

Not its figures' size (the machine is shared): that every job completed, and that
every figure the issue names is reported for both workers.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from tests import services

PER_KIND = {"kind", "pool", "jobs", "in_flight", "pss_idle_mb", "pss_loaded_mb", "pss_per_waiting_job_mb",
            "pss_added_per_waiting_job_mb", "timeout_late_s", "cancel_to_attempt_ended_s",
            "cancel_to_connection_closed_s", "completed", "all_completed", "submit_errors"}


@pytest.mark.slow
def test_the_waiting_scenario_reports_memory_and_latencies_for_both_workers_and_completes_every_job():
    # Given: a redis-server and a fresh Postgres database (the scenario starts its own stack on it)
    try:
        services.redis_server_binary()
        services.ensure_postgres()
    except services.ServiceMissing as exc:
        pytest.fail(str(exc)) if services.IN_CI else pytest.skip(f"{exc} (this fails in CI)")
    database = services.create_database()
    try:
        # When: the scenario runs with 12 jobs on the I/O worker and 2 on the prefork worker, JSON out
        bench = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "bench", "waiting", "--json", "--database-url", database,
             "--waiting-jobs", "12", "--prefork-jobs", "2", "--provider-s", "8", "--web-workers", "1"],
            cwd=services.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            out, err = bench.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            bench.send_signal(signal.SIGTERM)  # the bench stops the stack it started on SIGTERM
            out, err = bench.communicate(timeout=60)
            pytest.fail(f"genline bench waiting took over 300 s:\n{err[-3000:]}")
    finally:
        services.drop_database(database)

    # Then: it exits 0 with a report for each worker holding every figure
    assert bench.returncode == 0, err[-3000:] + out[-3000:]
    report = json.loads(out)
    io, prefork = report["io"], report["prefork"]
    for row in (io, prefork):
        assert PER_KIND <= row.keys(), PER_KIND - row.keys()
    assert (io["pool"], prefork["pool"]) == ("gevent", "prefork")
    # And: every job's call was held open at once, and every job completed, on both
    assert (io["in_flight"], prefork["in_flight"]) == (12, 2)
    assert io["all_completed"] and io["completed"] == 12
    assert prefork["all_completed"] and prefork["completed"] == 2
    assert io["submit_errors"] == prefork["submit_errors"] == 0
    # And: memory is measured for the whole worker and per waiting job
    for row in (io, prefork):
        assert row["pss_loaded_mb"] > 0 and row["pss_per_waiting_job_mb"] > 0, row
    # And: each timeout probe failed with `timeout` and each canceled attempt ended, at that load
    for row in (io, prefork):
        assert len(row["timeout_late_s"]) == 3 and all(v is not None for v in row["timeout_late_s"]), row
        assert len(row["cancel_to_attempt_ended_s"]) == 3, row
    # And: on the I/O worker a cancel closes the provider call's connection (prefork abandons it)
    assert all(v is not None for v in io["cancel_to_connection_closed_s"]), io
