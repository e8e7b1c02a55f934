"""A Redis at maxmemory with noeviction, or a read-only replica (every write refused,
reads and pings still answered): submissions answer 503 and leave nothing behind,
/readyz is 503, and the worker waits and resumes instead of exiting."""
from __future__ import annotations

import pytest
import redis

from tests import services

BODY = {"prompt": "full redis", "params": {"size": "16x16"}}


def fill(client: redis.Redis) -> None:
    """Our own test Redis, made full: with maxmemory 1 byte and noeviction every write is refused."""
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)


def free(client: redis.Redis) -> None:
    client.config_set("maxmemory", 0)


def make_read_only(client: redis.Redis) -> None:
    """Our own test Redis, made a replica of a master that never answers: it keeps its data and refuses writes."""
    client.config_set("replica-read-only", "yes")
    client.replicaof("127.0.0.1", "1")


def make_writable(client: redis.Redis) -> None:
    client.replicaof("NO", "ONE")


REFUSALS = {"full": (fill, free), "read-only": (make_read_only, make_writable)}


def job_count(stack, headers) -> int:
    return len(stack.client.get("/v1/jobs?limit=100", headers=headers).get_json()["data"])


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_a_full_redis_refuses_submissions_and_the_worker_waits_then_resumes(make_stack, refusal):
    # Given a stack with a worker and beat, a job generating and one waiting behind it
    stack = make_stack(worker={"concurrency": 1, "name": "full"})
    stack.start_beat()
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    headers = stack.new_tenant("full")
    running = stack.submit(headers, {**BODY, "params": {"size": "16x16", "simulate": {"latency_s": 2}}})
    waiting = stack.submit(headers, BODY)
    stack.wait(headers, running["id"], statuses=("processing",))
    worker = stack.processes[0]

    # When Redis reaches maxmemory, or becomes a read-only replica
    refuse, accept = REFUSALS[refusal]
    refuse(client)
    try:
        # Then a submission is 503 with Retry-After, and leaves no job row behind
        before = job_count(stack, headers)
        refused = stack.client.post("/v1/jobs", json=BODY, headers={**headers, "Idempotency-Key": "full-1"})
        assert refused.status_code == 503, refused.get_data(as_text=True)
        assert refused.get_json()["error"]["code"] == "service_unavailable" and refused.headers["Retry-After"] == "5"
        assert job_count(stack, headers) == before

        # And readiness says the broker is not usable, though it answers pings
        ready = stack.client.get("/readyz")
        assert ready.status_code == 503 and ready.get_json()["checks"]["broker"].startswith("error")

        # And the worker outlives the running job's refused sends and acks
        services.assert_stays(lambda: worker.proc.poll() is None and "Unrecoverable error" not in worker.log(), 6,
                              "the worker running:\n" + worker.log()[-3000:])
        assert worker.proc.poll() is None, worker.log()[-3000:]
    finally:
        accept(client)

    # When Redis accepts writes again
    # Then the same worker finishes both jobs, and the retried submission (same key) is taken and runs
    for job_id in (running["id"], waiting["id"]):
        done = stack.wait(headers, job_id, timeout=90)
        assert done["status"] == "completed", (job_id, done["error"], worker.log()[-3000:])
    again = stack.client.post("/v1/jobs", json=BODY, headers={**headers, "Idempotency-Key": "full-1"})
    assert again.status_code == 202
    assert stack.wait(headers, again.get_json()["id"], timeout=60)["status"] == "completed"
    assert stack.client.get("/readyz").status_code == 200
    assert worker.proc.poll() is None
