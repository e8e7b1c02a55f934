"""Lease renewal: one thread per process and app keeps a running step's lease, and
reports when it is gone."""
from __future__ import annotations

import time

from pipeline.core.lifecycle import JobStatus, Step
from pipeline.store import jobs
from pipeline.worker import leases


def _claimed(stack, owner: str, lease_s: float):
    with stack.app.app_context():
        job = jobs.create(jobs.NewJob(
            tenant_id="leases", operation="generate", providers=["local"], prompt="p",
            params={"size": "16x16", "n": 1, "format": "png"}, inputs=None,
            timeout_s=10, deadline_s=30, max_attempts=1,
        ))
        assert jobs.claim(job.id, Step.VALIDATE, owner, lease_s) is not None
        return job


def test_a_held_lease_is_renewed_until_released_and_lost_once_the_job_is_canceled(stack):
    # Given two steps holding 0.6 s leases through this process's renewer
    renewer = leases.renewer(stack.app)
    kept, canceled = _claimed(stack, "owner-a", 0.6), _claimed(stack, "owner-b", 0.6)
    held_a, held_b = renewer.hold(kept.id, "owner-a", 0.6), renewer.hold(canceled.id, "owner-b", 0.6)
    try:
        # When three lease periods pass, and one of the jobs is canceled meanwhile
        time.sleep(0.9)
        with stack.app.app_context():
            assert jobs.transition(canceled.id, JobStatus.CANCELED)
        time.sleep(0.9)
        with stack.app.app_context():
            row = jobs.get(kept.id)
        # Then the running one still holds a lease in the future, and was never reported lost
        assert row.lease_owner == "owner-a" and row.lease_until.timestamp() > time.time()
        assert not held_a.lost.is_set()
        # And the canceled one's holder learned it lost its lease
        assert held_b.lost.wait(1.0)
    finally:
        renewer.release(held_a)
        renewer.release(held_b)
    # And once released, a lease is no longer renewed: it runs out
    time.sleep(1.0)
    with stack.app.app_context():
        assert jobs.get(kept.id).lease_until.timestamp() < time.time()
