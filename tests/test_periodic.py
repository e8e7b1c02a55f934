"""Each periodic task runs one pass at a time, whoever sent it (beat, or a pass that overran)."""
from __future__ import annotations

import redis

from pipeline.worker.periodic import KEY, alone
from tests.sends import sends_refused
from tests.services import wait_for


def test_a_second_pass_is_skipped_while_the_first_holds_the_lock(stack):
    with stack.app.app_context():
        with alone("test-pass", 10) as first:
            with alone("test-pass", 10) as second:
                assert (first, second) == (True, False)
        with alone("test-pass", 10) as again:
            assert again is True


def test_no_reaper_pass_runs_while_another_holds_its_lock_and_the_next_runs_once_it_is_free(make_stack):
    # Given a worker and beat, and a reaper pass in progress elsewhere (its lock held)
    stack = make_stack()
    worker = stack.start_worker(concurrency=1, name="periodic")
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    client.set(KEY.format("reap"), "another-pass", ex=60)
    stack.start_beat()
    # When a job's message is lost
    headers = stack.new_tenant()
    with sends_refused(stack.env["REDIS_URL"]):
        job = stack.submit(headers, {"prompt": "overlap", "params": {"size": "32x32"}})
    # Then beat's passes are skipped meanwhile, and the job is not sent
    wait_for(lambda: worker.log().count("periodic pass skipped task=reap") >= 3, 30, "skipped passes")
    # (two more skipped passes, each of which would have sent it: waited for, not slept through)
    wait_for(lambda: worker.log().count("periodic pass skipped task=reap") >= 5, 30, "two more skipped passes")
    assert stack.job(headers, job["id"])["status"] == "queued" and len(stack.events(job["id"])) == 1
    # When that pass ends (its lock freed), the next pass sends it and it completes
    client.delete(KEY.format("reap"))
    done = stack.wait(headers, job["id"], timeout=30)
    assert done["status"] == "completed", done["error"]
