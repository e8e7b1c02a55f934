"""A lost worker host, across real network boundaries (tests/multihost/bed.py): jobs of
both worker kinds in flight on host A; A is SIGKILLed whole, or cut off by its link;
every job it held resumes on host B and completes, once. genline runs with its DEFAULT
lease and reaper settings here (GENLINE_LEASE_S=8, GENLINE_REAPER_INTERVAL_S=2), and
each test prints the time from the loss to each job's new claim on B: the figures of
docs/multihost.md (`pytest -n 0 -s tests/multihost/test_lost_host.py`).
"""
from __future__ import annotations

import statistics
from datetime import datetime, timezone

import pytest

from tests import services
from tests.multihost.cluster import Cluster

LATENCY_S = 12  # each provider call: long enough that no job ends on A before the loss


@pytest.fixture(scope="module")
def cluster(bed):
    # a, c: the hosts to lose; b: the survivor. All on standby until a test points them at the queues.
    made = Cluster(bed, workers=("a", "b", "c"), standby=True)
    yield made
    made.close()


def _in_flight_on(cluster: Cluster, host, tag: str) -> list[str]:
    """Two compute jobs (local provider) and four I/O jobs (remote provider), all running on ``host``."""
    api = cluster.api
    compute = [api.submit({"prompt": f"{tag} compute {i}", "params": {"size": "32x32",
                                                                      "simulate": {"latency_s": LATENCY_S}}})["id"]
               for i in range(2)]
    remote = [api.submit({"prompt": f"slow:{LATENCY_S} {tag} io {i}", "provider": "http"})["id"] for i in range(4)]
    ids = compute + remote
    services.wait_for(lambda: cluster.held_by(host, ids, "generate") == set(ids), 60, f"every job running on host {host.name}")
    assert all(r["step"] == "generate" and r["status"] == "processing" for r in cluster.rows(ids).values())
    return ids


def _resumed_on_survivor(cluster: Cluster, ids: list[str], survivor, at: datetime) -> list[float]:
    """Every job completed once, its generate claimed again after ``at`` and run on ``survivor``;
    returns the seconds from ``at`` to each new claim."""
    done = [cluster.api.wait(i, timeout=120) for i in ids]
    assert [d["status"] for d in done] == ["completed"] * len(ids), [d["error"] for d in done]
    claims = {i: cluster.claimed_at(i, "generate", at) for i in ids}
    resumed = {i: claimed for i, claimed in claims.items() if claimed is not None}
    assert resumed.keys() == set(ids), claims
    logs = cluster.worker_logs(survivor)
    for job in done:
        assert f"step finished job_id={job['id']} step=generate" in logs
        assert [e["type"] for e in cluster.events(job["id"])].count("completed") == 1
        assert len(job["outputs"]) == 1
    # and each remote job was called again, from the survivor's address
    for job in done:
        if job["provider"] == "http":
            assert survivor.address in {c["peer"] for c in cluster.recorded("infer") if c["prompt"] == job["prompt"]}
    return [(resumed[i] - at).total_seconds() for i in ids]


def _report(what: str, seconds: list[float]) -> None:
    print(f"\n{what}: time to resume on another host, {len(seconds)} jobs (lease 8 s, reaper 2 s): "
          f"min {min(seconds):.1f} s, median {statistics.median(seconds):.1f} s, max {max(seconds):.1f} s")


def test_every_job_of_a_host_killed_whole_resumes_on_another_host(cluster):
    a, b = cluster.bed.hosts["a"], cluster.bed.hosts["b"]
    # Given host A running two compute jobs and four remote (I/O) jobs, and host B idle
    cluster.activate(a)
    ids = _in_flight_on(cluster, a, "host-a")
    cluster.activate(b)

    # When every process of host A is SIGKILLed at once (the machine is lost)
    lost_at = datetime.now(timezone.utc)
    a.kill_all()

    # Then every job it held resumes on B and completes, once
    seconds = _resumed_on_survivor(cluster, ids, b, lost_at)
    _report("host SIGKILLed", seconds)
    cluster.standby(b)


def test_every_job_of_a_host_cut_off_resumes_on_another_host_and_the_host_changes_nothing_when_back(cluster):
    c, b = cluster.bed.hosts["c"], cluster.bed.hosts["b"]
    # Given host C running two compute jobs and four remote (I/O) jobs, and host B idle
    cluster.activate(c)
    ids = _in_flight_on(cluster, c, "host-c")
    cluster.activate(b)

    # When C's link goes down: its processes keep running, nothing they send arrives
    lost_at = datetime.now(timezone.utc)
    c.link_down()
    try:
        # Then every job it held resumes on B and completes, once
        seconds = _resumed_on_survivor(cluster, ids, b, lost_at)
        _report("host cut off", seconds)
        before = {i: (r["status"], r["outputs"], r["event_seq"], r["attempt"]) for i, r in cluster.rows(ids).items()}
    finally:
        c.link_up()

    # And once C is back, each of its attempts ends without a trace: no write of it matches the row.
    # An attempt ends on C itself (stopped, its result discarded, its message dropped), or its
    # write gives up on the unreachable database (GENLINE_DB_LINK_TIMEOUT_S) and the step goes
    # back to the queue as a Celery retry, which whichever host takes it drops.
    ended = ("step stopped job_id={}", "step result discarded job_id={}", "message dropped job_id={}")

    def attempt_ended(job_id: str, on_c: str, anywhere: str) -> bool:
        if any(e.format(job_id) in on_c for e in ended):
            return True
        return f"database unavailable job_id={job_id}" in on_c and f"message dropped job_id={job_id}" in anywhere

    def all_ended() -> bool:
        on_c = cluster.worker_logs(c)
        anywhere = on_c + "".join(cluster.worker_logs(h) for h in cluster.bed.hosts.values()
                                  if h.name in cluster.workers and h is not c)
        return all(attempt_ended(i, on_c, anywhere) for i in ids)

    services.wait_for(all_ended, 120, "host C's attempts to end after its link came back")
    after = {i: (r["status"], r["outputs"], r["event_seq"], r["attempt"]) for i, r in cluster.rows(ids).items()}
    assert after == before
