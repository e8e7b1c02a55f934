"""Pub/sub is only the fast path: streams and long-polls survive a Redis restart through the log."""
from __future__ import annotations

import threading
import time

import pytest

from tests import services
from tests.sse import Reader
from tests.test_events_sse import path_of
from web import hub


@pytest.mark.slow
def test_a_stream_misses_nothing_when_redis_restarts_mid_job(make_stack):
    # Given a private stack (its own Redis) with a worker and the reaper, and a running job
    stack = make_stack(GENLINE_SSE_HEARTBEAT_S="1")
    stack.start_worker(concurrency=1, name="resilience")
    stack.start_beat()
    tenant = stack.new_tenant()
    job = stack.submit(tenant, {"prompt": "through a restart", "params": {"size": "16x16", "simulate": {"latency_s": 4}},
                                "budget": {"deadline_s": 60}})
    response = stack.client.get(path_of(job["urls"]["events"]), buffered=False)
    reader = Reader(response.iter_encoded())
    frames = []
    for frame in reader.events():
        frames.append(frame)
        if frame["event"] == "progress":
            break

    # When Redis is killed (losing every pub/sub message in flight) and comes back while the job runs
    stack.redis.restart()

    # Then the stream still ends with the terminal event, having sent every logged event once, in order
    frames.extend(reader.events())
    response.close()
    log = stack.events(job["id"])
    assert [int(f["id"]) for f in frames] == [e["id"] for e in log]
    assert frames[-1]["event"] in ("completed", "failed")


@pytest.mark.slow
def test_a_long_poll_answers_when_the_job_ends_even_without_pub_sub(make_stack):
    # Given a private stack (no worker: the job stays queued) whose Redis goes away while a request long-polls
    stack = make_stack()
    tenant = stack.new_tenant()
    job = stack.submit(tenant, {"prompt": "held", "params": {"size": "16x16"}})
    answer = {}

    def poll():
        answer["job"] = stack.client.get(f"/v1/jobs/{job['id']}?wait=30", headers=tenant).get_json()
        answer["at"] = time.monotonic()

    poller = threading.Thread(target=poll)
    poller.start()
    waiting_on = hub.hub_for(stack.app.extensions["genline.config"].redis_url)
    services.wait_for(lambda: waiting_on.waiting() >= 1 and waiting_on.connected.is_set(), 10, "the long-poll waiting")
    stack.redis.kill()

    # When the job's row becomes terminal (written straight to the store: the broker is gone)
    from pipeline.core.errors import Canceled
    from pipeline.core.lifecycle import JobStatus
    from pipeline.store import jobs
    with stack.app.app_context():
        jobs.transition(job["id"], JobStatus.CANCELED, error=Canceled("test").as_dict(None), data={})
    ended = time.monotonic()

    # Then the long-poll answers with the terminal job, long before its 30 s
    poller.join(40)
    stack.redis.start()
    assert answer["job"]["status"] == "canceled"
    assert answer["at"] - ended < 20
