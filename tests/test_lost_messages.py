"""No lost message can hide: after a retry, a resume and a provider failover alike,
a job whose new message never reached the broker is sent again by the reaper,
although the in-flight marker of its earlier message is still in Redis.

The message is lost for real: the test's own Redis refuses LPUSH (the command
kombu queues a message with) through an ACL rule for as long as the move's
send takes, so the send fails while every other Redis command still works.

A message lost in transit (popped for a worker whose link died) leaves its own
marker behind: the test takes it off the queue with kombu's ``queue_purge`` and
moves the reaper's clock past the wait that rule allows (reaper rule 4).
"""
from __future__ import annotations

import time
from datetime import timedelta

import redis

from pipeline.adapters import broker
from pipeline.adapters.dispatch import MARKER
from pipeline.store.models import utcnow
from pipeline.worker import reaper
from tests.sends import sends_refused
from tests.services import wait_for

DEADLINE_S = 120
"""Far beyond the waits below: a job hidden until its deadline fails these tests."""


def earlier_markers(stack, job_id: str) -> list[bytes]:
    return redis.Redis.from_url(stack.env["REDIS_URL"]).keys(MARKER.format(job_id) + "*")


def event_types(stack, job_id: str) -> list[str]:
    return [e["type"] for e in stack.events(job_id)]


def send_failed(worker, job_id: str) -> bool:
    return f"dispatch failed job_id={job_id}" in worker.log()


def test_a_retry_whose_message_is_lost_is_sent_again(make_stack):
    # Given a job generating, whose first attempt will fail (a retry follows)
    stack = make_stack()
    worker = stack.start_worker(concurrency=1, name="lost-retry")
    stack.start_beat()
    headers = stack.new_tenant()
    job = stack.submit(headers, {"prompt": "retry",
                                 "params": {"size": "32x32", "simulate": {"latency_s": 1.5, "fail_attempts": 1}},
                                 "budget": {"max_attempts": 2, "deadline_s": DEADLINE_S}})
    wait_for(lambda: "started" in event_types(stack, job["id"])[2:], 60, "generate started")
    # When the retry's message cannot be queued (the earlier message's marker is still there)
    with sends_refused(stack.env["REDIS_URL"]):
        wait_for(lambda: send_failed(worker, job["id"]), 30, "the retry's send to fail")
        assert "retry" in event_types(stack, job["id"])
        assert earlier_markers(stack, job["id"]), "the earlier message's marker should still be in Redis"
    # Then the reaper sends it again and the job completes, long before its deadline
    done = stack.wait(headers, job["id"], timeout=30)
    assert done["status"] == "completed", done["error"]
    assert done["attempt"] == 2


def test_a_resume_whose_message_is_lost_is_sent_again(make_stack):
    # Given a job that failed (its notify message's marker lives on in Redis)
    stack = make_stack()
    stack.start_worker(concurrency=1, name="lost-resume")
    stack.start_beat()
    headers = stack.new_tenant()
    job = stack.submit(headers, {"prompt": "resume", "params": {"size": "32x32", "simulate": {"fail_attempts": 1}},
                                 "budget": {"max_attempts": 1, "deadline_s": DEADLINE_S}})
    assert stack.wait(headers, job["id"], timeout=60)["status"] == "failed"
    assert earlier_markers(stack, job["id"])
    # When it is resumed while no message can be queued
    with sends_refused(stack.env["REDIS_URL"]):
        response = stack.client.post(f"/v1/jobs/{job['id']}/retry", headers=headers)
        assert response.status_code == 202, response.get_data(as_text=True)
    assert stack.job(headers, job["id"])["status"] == "queued"
    # Then the reaper sends it again and it completes
    done = stack.wait(headers, job["id"], timeout=30)
    assert done["status"] == "completed", done["error"]


def test_a_failover_whose_message_is_lost_is_sent_again(make_stack):
    # Given a job with two providers whose first fails its only attempt
    stack = make_stack()
    worker = stack.start_worker(concurrency=1, name="lost-failover")
    stack.start_beat()
    headers = stack.new_tenant()
    job = stack.submit(headers, {"prompt": "failover", "provider": ["local", "local"],
                                 "params": {"size": "32x32", "simulate": {"latency_s": 1.5, "fail_attempts": 1}},
                                 "budget": {"max_attempts": 1, "deadline_s": DEADLINE_S}})
    wait_for(lambda: "started" in event_types(stack, job["id"])[2:], 60, "generate started")
    # When the message to the next provider cannot be queued
    with sends_refused(stack.env["REDIS_URL"]):
        wait_for(lambda: send_failed(worker, job["id"]), 30, "the failover's send to fail")
        retry = [e for e in stack.events(job["id"]) if e["type"] == "retry"]
        assert retry and retry[0]["data"]["provider"] == "local"
        assert earlier_markers(stack, job["id"])
    # Then the reaper sends it again and the second provider completes it
    done = stack.wait(headers, job["id"], timeout=30)
    assert done["status"] == "completed", done["error"]
    assert done["attempt"] == 2


def test_a_redis_flush_after_a_retry_loses_message_and_marker_and_the_job_still_completes(make_stack):
    # Given a job waiting out a retry's backoff (its message held with an ETA)
    stack = make_stack()
    stack.start_worker(concurrency=1, name="flush-retry")
    stack.start_beat()
    headers = stack.new_tenant()
    job = stack.submit(headers, {"prompt": "flush", "params": {"size": "32x32", "simulate": {"fail_attempts": 2}},
                                 "budget": {"max_attempts": 3, "deadline_s": DEADLINE_S}})
    wait_for(lambda: "retry" in event_types(stack, job["id"]), 60, "a retry")
    # When Redis is SIGKILLed and comes back empty
    stack.redis.restart()
    started = time.monotonic()
    # Then the job completes
    done = stack.wait(headers, job["id"], timeout=60)
    assert done["status"] == "completed", done["error"]
    assert time.monotonic() - started < 60


def test_the_reaper_checks_a_backlog_larger_than_one_pass_batch(make_stack, monkeypatch):
    # Given five queued jobs whose messages were lost, no worker, and passes that read two jobs each
    from pipeline.adapters import dispatch
    from pipeline.store import jobs
    stack = make_stack()
    headers = stack.new_tenant()
    with sends_refused(stack.env["REDIS_URL"]):
        ids = [stack.submit(headers, {"prompt": f"backlog {i}", "params": {"size": "16x16"}})["id"] for i in range(5)]
    monkeypatch.setattr(reaper, "BATCH", 2)
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    # When the reaper runs three passes once the jobs have settled (its clock moved past the settle time)
    settled = utcnow() + timedelta(seconds=reaper.SETTLE_S + 0.2)
    with stack.app.app_context():
        sent = sum(reaper.reap_once(now=settled)["lost_message"] for _ in range(3))
        keys = [dispatch.marker_key(jobs.get(job_id)) for job_id in ids]
    # Then every one of them was sent again, each once
    assert sent == 5
    assert all(client.exists(key) for key in keys)


QUEUE = "io.normal"
"""Where a normal-priority job's validate message waits."""


def depth(stack) -> int:
    with stack.app.app_context():
        return broker.queue_depths(stack.app.extensions["celery"], [QUEUE])[QUEUE]


def past_the_unclaimed_wait(stack):
    """A reaper clock at which every job submitted so far has waited unclaimed longer than rule 4 allows."""
    lease_s = stack.app.extensions["genline.config"].lease_s
    return utcnow() + timedelta(seconds=reaper.UNCLAIMED_LEASES * lease_s + 1)


def test_a_message_lost_in_transit_is_sent_again_although_its_marker_stays(make_stack):
    # Given a queued job whose message left its queue without reaching a worker (no worker runs)
    stack = make_stack()
    headers = stack.new_tenant()
    job = stack.submit(headers, {"prompt": "in transit", "params": {"size": "32x32"},
                                 "budget": {"deadline_s": DEADLINE_S}})
    assert depth(stack) == 1
    with stack.app.app_context(), stack.app.extensions["celery"].connection_for_write() as conn:
        conn.default_channel.queue_purge(QUEUE)
    assert depth(stack) == 0
    markers = earlier_markers(stack, job["id"])
    assert markers, "the lost message's marker should still be in Redis"
    # When the reaper passes once the job has waited unclaimed past the bound
    with stack.app.app_context():
        done = reaper.reap_once(now=past_the_unclaimed_wait(stack))
    # Then its step is sent again, as a new message with its own marker
    assert done["lost_in_transit"] == 1, done
    assert done["lost_message"] == 0, done
    assert depth(stack) == 1
    assert set(earlier_markers(stack, job["id"])) - set(markers)
    # And a worker completes it, long before its deadline
    stack.start_worker(concurrency=1, name="in-transit")
    finished = stack.wait(headers, job["id"], timeout=60)
    assert finished["status"] == "completed", finished["error"]


def test_a_short_marker_in_transit_is_left_to_expire(make_stack):
    # Given a job with no message in any queue whose marker is short, as a countdown (retry) message's is:
    # a worker holds such a message until its ETA, in no queue
    stack = make_stack()
    headers = stack.new_tenant()
    job = stack.submit(headers, {"prompt": "countdown", "params": {"size": "16x16"},
                                 "budget": {"deadline_s": DEADLINE_S}})
    with stack.app.app_context(), stack.app.extensions["celery"].connection_for_write() as conn:
        conn.default_channel.queue_purge(QUEUE)
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    [marker] = earlier_markers(stack, job["id"])
    client.expire(marker, 30)
    # When the reaper passes once the job has waited unclaimed past the bound
    with stack.app.app_context():
        done = reaper.reap_once(now=past_the_unclaimed_wait(stack))
    # Then it is not sent before its marker expires (a countdown message would skip its backoff)
    assert done["lost_in_transit"] == 0, done
    assert depth(stack) == 0


def test_a_message_waiting_behind_a_backlog_is_not_sent_again(make_stack):
    # Given three queued jobs whose messages wait in their queue (no worker runs)
    stack = make_stack()
    headers = stack.new_tenant()
    ids = [stack.submit(headers, {"prompt": f"backlog {i}", "params": {"size": "16x16"},
                                  "budget": {"deadline_s": DEADLINE_S}})["id"] for i in range(3)]
    assert depth(stack) == 3
    # When the reaper passes as if they had waited unclaimed past the bound
    with stack.app.app_context():
        done = reaper.reap_once(now=past_the_unclaimed_wait(stack))
    # Then none is sent again: the queue holds the same three messages
    assert done["lost_in_transit"] == 0, done
    assert done["lost_message"] == 0, done
    assert depth(stack) == 3
    # And a worker completes each of them
    stack.start_worker(concurrency=1, name="backlog")
    for job_id in ids:
        finished = stack.wait(headers, job_id, timeout=60)
        assert finished["status"] == "completed", finished["error"]
