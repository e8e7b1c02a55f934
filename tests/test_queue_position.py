"""queue_position where it is not read one job at a time: in a submission's answer and in a list.

A submission reads it once its first message is sent; a list reads it for
every queued job of the page with one query. Both must say what reading each
job alone says (test_priority.py defines that).
"""
from __future__ import annotations

from unittest import mock

from pipeline.store import jobs


def test_submit_answers_and_lists_give_the_positions_each_job_has_alone(make_stack):
    # Given a stack with no worker (every job stays queued) and two tenants
    stack = make_stack()
    mine, other = stack.new_tenant("qp"), stack.new_tenant("qo")
    body = {"prompt": "q", "params": {"size": "16x16"}}

    # When jobs of every priority are submitted, one by the other tenant, and one is canceled
    answers = {}
    for headers, priority in ((mine, "normal"), (mine, "low"), (other, "high"), (mine, "normal"),
                              (mine, "high"), (mine, "low"), (mine, "normal")):
        job = stack.submit(headers, {**body, "priority": priority})
        answers[job["id"]] = job["queue_position"]
    canceled = list(answers)[3]
    assert stack.client.post(f"/v1/jobs/{canceled}/cancel", headers=mine).status_code == 202

    # Then each submission answered the position it had then: the queue is global, by priority then age
    assert list(answers.values()) == [1, 2, 1, 3, 2, 6, 5]
    # And a list gives every job of the page the position it has when read alone
    listed = {j["id"]: j["queue_position"] for j in stack.client.get("/v1/jobs", headers=mine).get_json()["data"]}
    alone = {job_id: stack.job(mine, job_id)["queue_position"] for job_id in listed}
    assert listed == alone
    assert sorted(p for p in listed.values() if p is not None) == [2, 3, 4, 5, 6]
    assert listed[canceled] is None
    # And a page holding a single queued job agrees too
    single = stack.client.get("/v1/jobs?limit=1", headers=mine).get_json()["data"][0]
    assert single["queue_position"] == alone[single["id"]] == 4


def test_a_submission_does_not_count_a_same_priority_job_that_sorts_after_it(make_stack):
    # Given a queued job whose id sorts after any new one (as a job made in the same
    # millisecond by another process may)
    stack = make_stack()
    tenant = stack.new_tenant("qs")
    with stack.app.app_context(), mock.patch("pipeline.store.jobs.new_id", return_value="job_" + "z" * 26):
        late = jobs.create(jobs.NewJob(tenant_id="qs-other", operation="generate", providers=["local"],
                                       prompt="p", params={"size": "16x16"}, inputs=None,
                                       timeout_s=10, deadline_s=30, max_attempts=1))

    # When a job of the same priority is submitted
    job = stack.submit(tenant, {"prompt": "q", "params": {"size": "16x16"}})

    # Then it is first: the job with the larger id starts after it, and reading it again agrees
    assert job["id"] < late.id
    assert job["queue_position"] == stack.job(tenant, job["id"])["queue_position"] == 1
