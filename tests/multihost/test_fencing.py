"""Fencing: a worker cut off from the others whose lease expired and whose job moved on
to another host must not finish that job, publish its outputs or send its webhook
once its link comes back, even when it comes back in the middle of the attempt: its
writes match no row, its output objects are never the ones the job points to, and
the webhook receiver gets one terminal delivery, of the attempt that won.

A short lease (3 s, reaper every 1 s): these tests are about the mechanism, not its
timing (tests/multihost/test_lost_host.py measures that with the defaults).
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from tests import services
from tests.multihost.cluster import Cluster

LATENCY_S = 20  # A's provider call: still running when its link comes back, whatever the machine's load


@pytest.fixture(scope="module")
def cluster(bed):
    made = Cluster(bed, workers=("a", "b"), standby=True, s3_host=True, GENLINE_LEASE_S=3, GENLINE_REAPER_INTERVAL_S=1)
    # Every write of an object is kept as a version: a late overwrite shows
    made.bucket().put_bucket_versioning(Bucket="genline", VersioningConfiguration={"Status": "Enabled"})
    yield made
    made.close()


@pytest.fixture
def roles(cluster):
    """Host A takes the jobs, host B stands by; both back on standby and linked afterwards."""
    a, b = cluster.bed.hosts["a"], cluster.bed.hosts["b"]
    cluster.activate(a)
    yield a, b
    a.link_up()
    cluster.s3.link_up()
    cluster.standby(a)
    cluster.standby(b)


def _task_ended(cluster: Cluster, host, step: str, task_id: str) -> bool:
    return re.search(rf"genline\.{step}\[{task_id}\] (succeeded|raised|retry)", cluster.worker_logs(host)) is not None


def _fenced_outcome(cluster: Cluster, job_id: str, hook_url: str) -> dict:
    """The job as it ended, checked: completed once, its one webhook of the winning attempt, its
    outputs the only versions of their objects."""
    job = cluster.api.job(job_id)
    assert job["status"] == "completed", job["error"]
    assert [e["type"] for e in cluster.events(job_id)].count("completed") == 1
    # (delivery is a task of its own, sent once the job is terminal: wait for it to arrive)
    hooks = services.wait_for(lambda: cluster.hooks(job_id), 60, f"the webhook of {job_id}")
    assert [h["type"] for h in hooks] == ["job.completed"], hooks
    sent = hooks[0]["data"]["job"]
    assert (sent["attempt"], [o["sha256"] for o in sent["outputs"]]) == (job["attempt"], [o["sha256"] for o in job["outputs"]])
    row = cluster.rows([job_id])[job_id]
    bucket = cluster.bucket()
    for output in row["outputs"]:
        key = f"outputs/{output['key']}"
        versions = [v for v in bucket.list_object_versions(Bucket="genline", Prefix=key).get("Versions", [])
                    if v["Key"] == key]
        # written once, by the attempt that won: no late write ever replaced it
        assert len(versions) == 1, versions
    # and nothing else of the job is left in the bucket (a fenced attempt removes what it wrote)
    stored = {o["Key"] for o in bucket.list_objects_v2(Bucket="genline", Prefix=f"outputs/outputs/{job_id}/")
              .get("Contents", [])}
    assert stored == {f"outputs/{o['key']}" for o in row["outputs"]}
    return job


def test_a_worker_cut_off_in_its_provider_call_cannot_finish_the_job_when_its_link_returns(cluster, roles):
    a, b = roles
    hook = {"url": cluster.hook_url + "/generate", "events": ["completed", "failed"]}
    # Given one compute job (local provider) and one I/O job (remote provider) inside their provider calls on A
    ids = [cluster.api.submit({"prompt": "fenced compute", "webhook": hook,
                               "params": {"size": "32x32", "simulate": {"latency_s": LATENCY_S}}})["id"],
           cluster.api.submit({"prompt": f"slow:{LATENCY_S} fenced io", "provider": "http", "webhook": hook})["id"]]
    services.wait_for(lambda: cluster.held_by(a, ids, "generate") == set(ids), 60, "both jobs running on A")
    a_owners = {i: r["lease_owner"] for i, r in cluster.rows(ids).items()}

    # When A is cut off, its leases expire and both jobs move on to B
    cut_at = datetime.now(timezone.utc)
    a.link_down()
    cluster.activate(b)
    services.wait_for(lambda: all(cluster.claimed_at(i, "generate", cut_at) for i in ids), 60, "B to take both jobs")
    # and A's link comes back while A is still inside both provider calls
    for i in ids:
        assert not _task_ended(cluster, a, "generate", a_owners[i])
    a.link_up()

    # Then both jobs complete by B's attempts, and A's attempts end with nothing of theirs recorded
    for i in ids:
        assert cluster.api.wait(i, timeout=120)["status"] == "completed"
    services.wait_for(lambda: all(_task_ended(cluster, a, "generate", a_owners[i]) for i in ids), 120,
                      "A's attempts to end")
    for i in ids:
        _fenced_outcome(cluster, i, hook["url"])
        assert f"step finished job_id={i} step=generate" not in cluster.worker_logs(a)


def test_a_worker_cut_off_in_its_upload_never_replaces_the_outputs_of_the_attempt_that_won(cluster, roles):
    a, b = roles
    hook = {"url": cluster.hook_url + "/upload", "events": ["completed", "failed"]}
    # Given A inside the upload of a job, its write to the bucket not through yet (storage is unreachable)
    cluster.s3.link_down()
    job_id = cluster.api.submit({"prompt": "fenced upload", "webhook": hook, "params": {"size": "32x32"}})["id"]
    services.wait_for(lambda: cluster.held_by(a, [job_id], "upload"), 60, "A to hold the job's upload")
    a_owner = cluster.rows([job_id])[job_id]["lease_owner"]

    # When A is cut off, storage comes back, and B takes the upload over and completes the job
    a.link_down()
    cluster.s3.link_up()
    cluster.activate(b)
    assert cluster.api.wait(job_id, timeout=60)["status"] == "completed"
    # and A's link comes back while its write may still be on its way
    assert not _task_ended(cluster, a, "upload", a_owner)
    a.link_up()

    # Then A's upload ends without replacing what the job points to, and one webhook was sent
    services.wait_for(lambda: _task_ended(cluster, a, "upload", a_owner), 120, "A's upload to end")
    _fenced_outcome(cluster, job_id, hook["url"])
