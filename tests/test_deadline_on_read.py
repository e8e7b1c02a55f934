"""A job reaches a terminal state by its deadline even while no beat is alive.

The reaper (run by beat) fails active jobs past their deadline; reading the job
does the same for that job, so a worker SIGKILLed mid-generate with every beat
down does not leave a job `processing` forever.
"""
from __future__ import annotations

import time

from tests.services import assert_stays, instant, wait_for


def test_a_lost_job_fails_at_its_deadline_when_read_with_no_beat_running(make_stack):
    # Given a stack with one worker and no beat, and a job hanging in generate
    stack = make_stack()
    worker = stack.start_worker(concurrency=1, name="lost")
    headers = stack.new_tenant()
    job = stack.submit(headers, {"prompt": "lost", "params": {"size": "16x16", "simulate": {"hang": True}},
                                 "budget": {"timeout_s": 30, "deadline_s": 6, "max_attempts": 1}})
    wait_for(lambda: stack.job(headers, job["id"])["step"] == "generate"
             and stack.job(headers, job["id"])["status"] == "processing", 30, "generate to start")
    # When the whole worker is SIGKILLed (nothing left to time the attempt out, no reaper)
    worker.kill_group()
    # Then a read after the deadline finds it failed with deadline_exceeded, within a few seconds of it
    done = stack.wait(headers, job["id"], timeout=20)
    finished = time.time()
    assert done["status"] == "failed"
    assert done["error"]["code"] == "deadline_exceeded"
    deadline = instant(done["deadline_at"]).timestamp()
    assert finished - deadline < 5


def test_a_job_within_its_deadline_is_left_alone_by_reads(stack, tenant):
    # Given a slow job well within its deadline
    job = stack.submit(tenant, {"prompt": "slow", "params": {"size": "16x16", "simulate": {"latency_s": 1.5}},
                                "budget": {"deadline_s": 60}})
    # When it is read many times while it runs (about 20 reads)
    assert_stays(lambda: stack.job(tenant, job["id"])["status"] in ("queued", "processing"), 0.4,
                 "the job running while read", 0.02)
    # Then it completes as usual
    assert stack.wait(tenant, job["id"])["status"] == "completed"
