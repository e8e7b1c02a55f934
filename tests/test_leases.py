"""Lease renewal: one thread per process and app keeps a running step's lease, and
reports when it is gone. The renewer's clock is the test's: a renewal period passes
when the test moves it, not after a wait."""
from __future__ import annotations

import time

import pytest

from pipeline.core.lifecycle import JobStatus, Step
from pipeline.store import jobs
from pipeline.worker import leases
from tests.services import wait_for

LEASE_S = 30.0  # long: the database's lease must never run out while the test runs, however loaded the machine


class Clock:
    """A monotonic clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _claimed(stack, owner: str, lease_s: float):
    with stack.app.app_context():
        job = jobs.create(jobs.NewJob(
            tenant_id="leases", operation="generate", providers=["local"], prompt="p",
            params={"size": "16x16", "n": 1, "format": "png"}, inputs=None,
            timeout_s=10, deadline_s=30, max_attempts=1,
        ))
        assert jobs.claim(job.id, Step.VALIDATE, owner, lease_s) is not None
        return job


def _lease_until(stack, job_id: str) -> float:
    with stack.app.app_context():
        job = jobs.get(job_id)
    assert job is not None and job.lease_until is not None
    return job.lease_until.timestamp()


def _renewal_period(stack, renewer, clock: Clock, job_id: str) -> None:
    """Move the clock by one renewal period and wait until ``job_id``'s lease was renewed by it."""
    before = _lease_until(stack, job_id)
    clock.now += LEASE_S / 3
    renewer.wake()
    wait_for(lambda: _lease_until(stack, job_id) > before, 30, f"the renewal of {job_id}'s lease")


def test_a_held_lease_is_renewed_until_released_and_lost_once_the_job_is_canceled(stack):
    # Given two steps holding leases through a renewer on the test's clock
    clock = Clock()
    renewer = leases.Renewer(stack.app, clock=clock)
    kept, canceled = _claimed(stack, "owner-a", LEASE_S), _claimed(stack, "owner-b", LEASE_S)
    held_a, held_b = renewer.hold(kept.id, "owner-a", LEASE_S), renewer.hold(canceled.id, "owner-b", LEASE_S)
    try:
        # When a renewal period passes, one of the jobs is canceled, and another period passes
        _renewal_period(stack, renewer, clock, kept.id)
        assert not held_b.lost.is_set()
        with stack.app.app_context():
            assert jobs.transition(canceled.id, JobStatus.CANCELED)
        _renewal_period(stack, renewer, clock, kept.id)
        with stack.app.app_context():
            row = jobs.get(kept.id)
        # Then the running one still holds a lease in the future, and was never reported lost
        assert row.lease_owner == "owner-a" and row.lease_until.timestamp() > time.time()
        assert not held_a.lost.is_set()
        # And the canceled one's holder learned it lost its lease
        assert held_b.lost.wait(30)
    finally:
        renewer.release(held_a)
        renewer.release(held_b)
    # And once released, a lease is no longer renewed: it runs out at the time it had.
    # (A third lease, held after the release, shows that two more renewal passes ran.)
    released_until = _lease_until(stack, kept.id)
    probe = _claimed(stack, "owner-c", LEASE_S)
    held_c = renewer.hold(probe.id, "owner-c", LEASE_S)
    try:
        _renewal_period(stack, renewer, clock, probe.id)
        _renewal_period(stack, renewer, clock, probe.id)
    finally:
        renewer.release(held_c)
    assert _lease_until(stack, kept.id) == released_until


@pytest.mark.parametrize("database", ["stack", "sqlite_stack"])  # one statement, on both databases
def test_leases_held_at_different_times_are_renewed_together_and_a_lost_one_among_them_is_reported(request, database):
    # Given a renewer with a lease held now, one held 4 s later, and one whose owner is not the job's
    stack = request.getfixturevalue(database)
    clock = Clock()
    renewer = leases.Renewer(stack.app, clock=clock)
    first, second, taken = (_claimed(stack, owner, LEASE_S) for owner in ("owner-d", "owner-e", "owner-f"))
    held_first = renewer.hold(first.id, "owner-d", LEASE_S)
    clock.now += 4
    held_second = renewer.hold(second.id, "owner-e", LEASE_S)
    held_taken = renewer.hold(taken.id, "owner-someone-else", LEASE_S)
    try:
        before = {job.id: _lease_until(stack, job.id) for job in (first, second)}
        # When the first falls due (the others are 4 s short of it, within half a renewal period)
        clock.now += LEASE_S / 3 - 4
        renewer.wake()
        # Then one pass renews both held leases, reports the other lost, and from then on they fall due together
        wait_for(lambda: all(_lease_until(stack, job_id) > until for job_id, until in before.items()), 30,
                 "both leases renewed")
        assert held_taken.lost.wait(30)
        assert held_first.due == held_second.due
        assert not held_first.lost.is_set() and not held_second.lost.is_set()
    finally:
        for held in (held_first, held_second, held_taken):
            renewer.release(held)
