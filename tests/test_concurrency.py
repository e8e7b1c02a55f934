"""Per-tenant concurrency: at most N of a tenant's jobs in generate at once; the rest
wait queued (with a queue position) without holding a worker process."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from pipeline.store import jobs as job_store
from pipeline.store.models import Job, db
from tests import services
from tests.services import instant


@pytest.fixture(params=["all", "kinds"])
def worker_layout(request) -> str:
    """Every test here on both layouts: one prefork worker, and the compute + I/O kinds."""
    return request.param


SLOW = {"prompt": "slow", "params": {"size": "16x16", "simulate": {"latency_s": 3}}}


def generate_intervals(stack, job_id):
    """(start, end) of each generate attempt, from the job's event log and row.

    An attempt that failed ends at its ``retry``/``failed``/``canceled`` event. The one that
    generated ends where its slot was released, which no event marks: its start plus the
    step's recorded time (``timing.generate_s``, a little short of the release, never
    past it). The upload's ``started`` is no end: under load the I/O worker claims it a
    while after the tenant's next job took the slot.
    """
    events = stack.events(job_id)
    with stack.app.app_context():
        generate_s = (job_store.get(job_id).timing or {}).get("generate_s")
    starts = [e for e in events if e["type"] == "started" and e["data"].get("step") == "generate"]
    ends = [e for e in events if e["type"] in ("retry", "failed", "canceled")
            or (e["type"] == "started" and e["data"].get("step") == "upload")]
    intervals = []
    for s in starts:
        end = next((e for e in ends if e["id"] > s["id"]), None)
        if end is None:
            intervals.append((s["created_at"], "9999"))  # still generating, or lost: holds its slot
        elif end["type"] == "started" and generate_s is not None:  # generated: the slot was released at its end
            intervals.append((s["created_at"], _iso(instant(s["created_at"]) + timedelta(seconds=generate_s))))
        else:
            intervals.append((s["created_at"], end["created_at"]))
    return intervals


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def most_at_once(intervals) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    now = peak = 0
    for _, delta in edges:
        now += delta
        peak = max(peak, now)
    return peak


def test_a_tenant_never_has_more_than_its_limit_in_generate(make_stack):
    # Given a limit of 2 per tenant and a worker with 3 processes
    stack = make_stack(GENLINE_TENANT_CONCURRENCY=2)
    stack.start_worker(concurrency=3, name="conc")
    stack.start_beat()
    busy, other = stack.new_tenant("busy"), stack.new_tenant("other")
    tenant_id = busy["X-Tenant"]

    # And a sampler of the database while the jobs run
    peak, stop = [0], threading.Event()

    def sample():
        with stack.app.app_context():
            while not stop.is_set():
                n = db.session.execute(select(func.count()).select_from(Job).where(
                    Job.tenant_id == tenant_id, Job.status == "processing", Job.step == "generate")).scalar_one()
                db.session.rollback()
                peak[0] = max(peak[0], n)
                stop.wait(0.05)  # a sample every 50 ms until the test stops the sampler

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        # When the tenant submits 6 slow jobs
        ids = [stack.submit(busy, SLOW)["id"] for _ in range(6)]

        # Then, once two are generating, the others wait queued with a queue position
        def two_generating_others_waiting():
            jobs = [stack.job(busy, i) for i in ids]
            waiting = any(j["step"] == "generate" and j["status"] == "queued" for j in jobs)
            return jobs if sum(j["status"] == "processing" for j in jobs) == 2 and waiting else None
        jobs = services.wait_for(two_generating_others_waiting, 30, "two jobs generating, the others waiting")
        waiting = [j for j in jobs if j["status"] == "queued"]
        assert waiting, [(j["status"], j["step"]) for j in jobs]
        assert all(isinstance(j["queue_position"], int) and j["queue_position"] >= 1 for j in waiting)

        # And another tenant's job runs at once, while the first tenant still has jobs waiting
        quick = stack.submit(other, {"prompt": "quick", "params": {"size": "16x16"}})
        done = stack.wait(other, quick["id"], timeout=30)
        assert done["status"] == "completed", done["error"]
        still_waiting = [i for i in ids if stack.job(busy, i)["status"] == "queued"]
        assert still_waiting, "the other tenant's job had to wait for the busy tenant's jobs"

        # And every job of the busy tenant completes, never more than 2 generating at once
        finished = [stack.wait(busy, i, timeout=90) for i in ids]
        assert [j["status"] for j in finished] == ["completed"] * 6, [j["error"] for j in finished]
    finally:
        stop.set()
        sampler.join(5)
    intervals = [iv for i in ids for iv in generate_intervals(stack, i)]
    assert len(intervals) == 6
    assert most_at_once(intervals) == 2, intervals
    assert peak[0] <= 2


def test_a_keys_concurrency_sets_its_tenants_limit(make_stack):
    # Given a tenant whose key allows only 1 job in generate (the default is 4)
    from web.keys import create_key
    stack = make_stack()
    stack.start_worker(concurrency=3, name="conc1")
    with stack.app.app_context():
        _row, key = create_key("solo", concurrency=1)
    headers = {"Authorization": f"Bearer {key}"}

    # When it submits 3 slow jobs
    ids = [stack.submit(headers, {**SLOW, "params": {"size": "16x16", "simulate": {"latency_s": 1}}})["id"]
           for _ in range(3)]
    finished = [stack.wait(headers, i, timeout=60) for i in ids]

    # Then they ran one at a time
    assert [j["status"] for j in finished] == ["completed"] * 3
    assert most_at_once([iv for i in ids for iv in generate_intervals(stack, i)]) == 1


def test_a_waiting_job_starts_even_when_no_worker_wakes_it(make_stack):
    # Given a limit of 1 and a job that hangs in generate (its worker will not finish it soon)
    stack = make_stack(GENLINE_TENANT_CONCURRENCY=1)
    stack.start_worker(concurrency=2, name="backstop")
    stack.start_beat()
    headers = stack.new_tenant("stuck")
    hung = stack.submit(headers, {"prompt": "hang", "params": {"size": "16x16", "simulate": {"hang": True}},
                                  "budget": {"timeout_s": 40, "deadline_s": 60, "max_attempts": 1}})
    stack.wait(headers, hung["id"], statuses=("processing",), timeout=30)
    waiting = stack.submit(headers, {"prompt": "next", "params": {"size": "16x16"}})
    services.wait_for(lambda: any(e["type"] == "started" and e["data"].get("step") == "validate"
                                  for e in stack.events(waiting["id"])), 30, "the second job validated", 0.1)
    services.assert_stays(lambda: stack.job(headers, waiting["id"])["status"] == "queued", 1.5,
                          "the second job waiting behind the hung one")

    # When the hung job leaves generate without its worker noticing (as a reaper deadline failure does)
    from pipeline.core.lifecycle import JobStatus
    from pipeline.store import jobs
    with stack.app.app_context():
        assert jobs.transition(hung["id"], JobStatus.FAILED, error={"code": "deadline_exceeded", "message": "test"})
    freed = time.monotonic()

    # Then the reaper's backstop sends the waiting job, long before the hung worker lets go
    done = stack.wait(headers, waiting["id"], timeout=30)
    assert done["status"] == "completed", done["error"]
    assert time.monotonic() - freed < 20


def test_the_limit_holds_on_sqlite(sqlite_stack):
    # Given a tenant limited to 1 job in generate, on the embedded SQLite database
    from web.keys import create_key
    with sqlite_stack.app.app_context():
        _row, key = create_key(f"lite-{time.monotonic_ns()}", concurrency=1)
    headers = {"Authorization": f"Bearer {key}"}

    # When it submits 3 slow jobs to a worker with 2 processes
    body = {"prompt": "lite", "params": {"size": "16x16", "simulate": {"latency_s": 1}}}
    ids = [sqlite_stack.submit(headers, body)["id"] for _ in range(3)]
    finished = [sqlite_stack.wait(headers, i, timeout=60) for i in ids]

    # Then all complete, one at a time
    assert [j["status"] for j in finished] == ["completed"] * 3
    assert most_at_once([iv for i in ids for iv in generate_intervals(sqlite_stack, i)]) == 1


def test_a_generate_claim_waits_for_its_tenants_claim_lock(stack):
    # The claim and its advisory lock travel in one round trip (pipeline.store.autocommit):
    # the lock must still be taken first, in the claim's transaction.
    from pipeline.core.lifecycle import Step
    from pipeline.store import jobs
    tenant = f"lock-{time.monotonic_ns()}"
    spec = jobs.NewJob(tenant_id=tenant, operation="generate", providers=["local"], prompt="locked",
                       params={"size": "16x16"}, inputs=None, timeout_s=30, deadline_s=60, max_attempts=1)
    with stack.app.app_context():
        # Given a queued job at step generate that no message will reach
        job_id = jobs.create(spec).id
        db.session.execute(Job.__table__.update().where(Job.id == job_id).values(step="generate"))
        db.session.commit()
        # and another session holding the job's tenant's claim lock
        holder = db.engine.raw_connection()
        holder.cursor().execute("SELECT pg_advisory_lock(hashtext('genline:tenant:' || %s))", (tenant,))
    claimed = {}

    def claim():
        with stack.app.app_context():
            claimed["job"] = jobs.claim(job_id, Step.GENERATE, "lock-test-owner", 30)

    # When a worker claims it
    thread = threading.Thread(target=claim)
    thread.start()
    try:
        thread.join(0.5)
        # Then the claim waits for the lock
        assert thread.is_alive(), "the claim did not wait for its tenant's claim lock"
    finally:
        holder.cursor().execute("SELECT pg_advisory_unlock(hashtext('genline:tenant:' || %s))", (tenant,))
        holder.commit()
        holder.close()
    # and takes the job once the lock is free
    thread.join(10)
    assert claimed["job"] is not None and claimed["job"].status == "processing"
