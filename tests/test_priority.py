"""Priority queues: a high-priority job does not wait behind a flood of low-priority ones.

The worker consumes every queue high before normal before low (pipeline.adapters.routing.ALL_QUEUES)
and the Redis transport polls the queues in that order (``queue_order_strategy: priority``), so a free worker
process takes the next high-priority message before any low one.
"""
from __future__ import annotations

from tests.services import instant, wait_for

RUN_S = 1.0


def generate_started(stack, job_id):
    for e in stack.events(job_id):
        if e["type"] == "started" and e["data"].get("step") == "generate":
            return instant(e["created_at"])
    return None


def test_a_high_priority_job_starts_within_one_jobs_run_time_behind_50_low_ones(make_stack):
    # Given one worker process busy with the first of 50 queued low-priority jobs
    stack = make_stack(GENLINE_TENANT_CONCURRENCY=100)
    stack.start_worker(concurrency=1, name="prio")
    tenant = stack.new_tenant("batch")
    slow = {"prompt": "batch", "params": {"size": "16x16", "simulate": {"latency_s": RUN_S}}, "priority": "low"}
    low = [stack.submit(tenant, slow)["id"] for _ in range(50)]
    wait_for(lambda: generate_started(stack, low[0]), 30, "the first low-priority job generating")

    # When a high-priority job of another tenant is submitted
    user = stack.new_tenant("interactive")
    high = stack.submit(user, {"prompt": "now", "params": {"size": "16x16"}, "priority": "high"})
    submitted = instant(high["created_at"])
    done = stack.wait(user, high["id"], timeout=60)

    # Then it completed while most low jobs still wait, starting within one job's run time
    assert done["status"] == "completed", done["error"]
    started = generate_started(stack, high["id"])
    waited = (started - submitted).total_seconds()
    assert waited < RUN_S + 3.0, f"the high-priority job waited {waited:.2f}s"
    overtaking = [i for i in low if (s := generate_started(stack, i)) is not None and submitted < s < started]
    assert len(overtaking) <= 1, f"{len(overtaking)} low jobs started generating ahead of it"
    still_queued = sum(stack.job(tenant, i)["status"] == "queued" for i in low)
    assert still_queued >= 40


def test_queue_position_counts_the_queued_jobs_ahead_by_priority_then_age(make_stack):
    # Given a stack with no worker, so every job stays queued
    stack = make_stack()
    tenant = stack.new_tenant("q")
    body = {"prompt": "q", "params": {"size": "16x16"}}

    # When normal, normal, low, high jobs are submitted in that order
    a, b = stack.submit(tenant, body)["id"], stack.submit(tenant, body)["id"]
    low = stack.submit(tenant, {**body, "priority": "low"})["id"]
    high = stack.submit(tenant, {**body, "priority": "high"})["id"]

    # Then the high one is next, then the normals by age, then the low one
    positions = {i: stack.job(tenant, i)["queue_position"] for i in (a, b, low, high)}
    assert positions == {high: 1, a: 2, b: 3, low: 4}
    # And a job that is no longer queued has none
    assert stack.client.post(f"/v1/jobs/{high}/cancel", headers=tenant).status_code == 202
    assert stack.job(tenant, high)["queue_position"] is None
    assert stack.job(tenant, a)["queue_position"] == 1
