"""Recovery: workers, Redis and the database fail under running jobs; every job still ends.

Each test builds its own stack (own Redis, own database, own workers) and kills
or restarts only processes it started.
"""
from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests import services
from tests.conftest import TERMINAL, Stack, base_env
from tests.services import wait_for


@pytest.fixture(params=["all", "kinds"])
def worker_layout(request) -> str:
    """Every test here on both layouts: one prefork worker, and the compute + I/O kinds."""
    return request.param


BODY = {"prompt": "survive", "params": {"size": "32x32", "simulate": {"latency_s": 4}}}


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (the prefork pool of a worker)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def generate_starts(stack, job_id) -> int:
    return sum(1 for e in stack.events(job_id) if e["type"] == "started" and e["data"]["step"] == "generate")


def wait_generating(stack, job_id, count=1):
    """Until generate attempt #count has started and reported progress: its provider is running."""
    def progressing():
        events = stack.events(job_id)
        starts = [i for i, e in enumerate(events) if e["type"] == "started" and e["data"]["step"] == "generate"]
        return len(starts) >= count and any(e["type"] == "progress" for e in events[starts[count - 1]:])
    wait_for(progressing, 60, f"generate attempt #{count} to report progress")


def test_pool_child_killed_mid_generate_the_job_still_completes(make_stack):
    # Given a job generating in the single pool child of a worker
    stack = make_stack()
    worker = stack.start_worker(concurrency=1, name="child-kill")
    headers = stack.new_tenant()
    job = stack.submit(headers, BODY)
    wait_generating(stack, job["id"])
    # (and an upload attempt's folder that nothing points to, as a pool child killed mid-upload leaves)
    folder = Path(urlparse(stack.env["STORAGE_URL"]).path) / "outputs" / job["id"]
    (folder / "0123456789abcdef").mkdir(parents=True)
    (folder / "0123456789abcdef" / "0.png").write_bytes(b"an earlier attempt's half-written output")
    # When that pool child is SIGKILLed
    (child,) = children(worker.pid)
    os.kill(child, signal.SIGKILL)
    # Then the message is requeued (acks late + reject on worker lost), re-taken, and the job completes
    done = stack.wait(headers, job["id"], timeout=60)
    assert done["status"] == "completed", done["error"]
    assert generate_starts(stack, job["id"]) == 2
    assert done["attempt"] == 2
    # And of the job's folder only its outputs stay: the job with a lost attempt removed the other folders
    wait_for(lambda: not (folder / "0123456789abcdef").exists() and len(list(folder.rglob("*.png"))) == 1, 10,
             "the earlier attempt's folder removed, the job's own output kept")
    assert stack.client.get(f"/v1/jobs/{job['id']}/outputs/0", headers=headers).status_code == 200


def test_whole_worker_killed_the_reaper_gives_the_job_to_another_worker(make_stack):
    # Given a job generating on worker A, and beat running the reaper
    stack = make_stack()
    first = stack.start_worker(concurrency=1, name="machine-a")
    stack.start_beat()
    headers = stack.new_tenant()
    job = stack.submit(headers, BODY)
    wait_generating(stack, job["id"])
    # When worker A and its children are SIGKILLed (a machine loss) and worker B starts
    first.kill_group()
    killed = time.monotonic()
    stack.start_worker(concurrency=1, name="machine-b")
    # Then the lease expires, the reaper sends the step again, and B completes the job within a minute
    done = stack.wait(headers, job["id"], timeout=60)
    assert done["status"] == "completed", done["error"]
    assert time.monotonic() - killed < 60
    assert generate_starts(stack, job["id"]) == 2


def test_a_job_that_kills_its_worker_every_time_ends_with_internal_error(make_stack):
    # Given GENLINE_MAX_LOST=2 and a job whose every attempt loses its process
    stack = make_stack(GENLINE_MAX_LOST=2)
    worker = stack.start_worker(concurrency=1, name="crashy")
    stack.start_beat()
    headers = stack.new_tenant()
    job = stack.submit(headers, {"prompt": "poison", "params": {"size": "32x32", "simulate": {"latency_s": 30}}})
    # When the pool child is killed each time the job starts generating
    for attempt in (1, 2):
        wait_generating(stack, job["id"], attempt)
        for child in children(worker.pid):
            os.kill(child, signal.SIGKILL)
    # Then the job fails with internal_error instead of looping
    done = stack.wait(headers, job["id"], timeout=60)
    assert done["status"] == "failed" and done["error"]["code"] == "internal_error", done["error"]
    assert "lost 2 times" in done["error"]["message"]


def test_countdown_retry_held_by_a_worker_that_dies_is_sent_again_by_the_reaper(make_stack):
    # Given a job whose third attempt failed, its retry message held by worker A until a 2-4 s ETA
    stack = make_stack()
    first = stack.start_worker(concurrency=1, name="eta-a")
    headers = stack.new_tenant()
    job = stack.submit(headers, {"prompt": "eta", "params": {"size": "32x32", "simulate": {"fail_attempts": 3}},
                                 "budget": {"max_attempts": 4, "deadline_s": 120}})
    retries = lambda: [e for e in stack.events(job["id"]) if e["type"] == "retry"]  # noqa: E731
    wait_for(lambda: len(retries()) == 3, 60, "the third retry event", 0.01)
    # A reserves the ETA message at once: Celery logs it received (attempts 1-3, then the fourth's)
    wait_for(lambda: len(re.findall(r"Task genline\.generate\[[^\]]+\] received", first.log())) >= 4, 30,
             "worker A to receive the retry's message")
    # When worker A dies with it (Redis would hand it out again only after the visibility timeout)
    first.kill_group()
    stack.start_worker(concurrency=1, name="eta-b")
    stack.start_beat()
    # Then the in-flight marker expires soon after the ETA, the reaper sends the step again, and it completes
    done = stack.wait(headers, job["id"], timeout=60)
    assert done["status"] == "completed", done["error"]
    assert done["attempt"] == 4


def test_redis_restarted_without_persistence_every_job_still_ends(make_stack):
    # Given jobs queued and running, workers and beat on a Redis of our own
    stack = make_stack()
    stack.start_worker(concurrency=2, name="redis-a")
    stack.start_beat()
    headers = stack.new_tenant()
    ids = [stack.submit(headers, {**BODY, "params": {"size": "32x32", "simulate": {"latency_s": 2}}})["id"]
           for _ in range(6)]
    wait_generating(stack, ids[0])
    # When Redis is SIGKILLed (losing every queued message and marker) and restarted empty
    stack.redis.restart()
    # Then every job reaches a terminal state, completed
    for job_id in ids:
        done = stack.wait(headers, job_id, timeout=90)
        assert done["status"] == "completed", (job_id, done["error"])


def test_submit_while_redis_is_down_stores_the_job_and_runs_it_when_redis_is_back(make_stack):
    # Given a stack whose Redis is down
    stack = make_stack()
    headers = stack.new_tenant()
    stack.redis.kill()
    # When a job is submitted
    job = stack.submit(headers, {"prompt": "broker outage", "params": {"size": "32x32"}})
    # Then it is stored and queued (202), not refused
    assert job["status"] == "queued"
    # When Redis is back with a worker and beat
    stack.redis.start()
    stack.start_worker(concurrency=1, name="after-outage")
    stack.start_beat()
    # Then the reaper dispatches it (no message, no marker) and it completes
    done = stack.wait(headers, job["id"], timeout=60)
    assert done["status"] == "completed", done["error"]


def test_graceful_sigterm_mid_job_loses_nothing(make_stack):
    # Given a job generating on a worker
    stack = make_stack()
    worker = stack.start_worker(concurrency=1, name="sigterm")
    headers = stack.new_tenant()
    job = stack.submit(headers, BODY)
    waiting = stack.submit(headers, {"prompt": "next", "params": {"size": "32x32"}})
    wait_generating(stack, job["id"])
    # When the worker gets SIGTERM (a deploy or scale-down) and a new worker starts after it exits
    worker.signal(signal.SIGTERM)
    worker.proc.wait(60)
    stack.start_worker(concurrency=1, name="after-sigterm")
    # Then the running job was finished by the warm shutdown and the queued one by the new worker
    for job_id in (job["id"], waiting["id"]):
        done = stack.wait(headers, job_id, timeout=60)
        assert done["status"] == "completed", done["error"]
    assert generate_starts(stack, job["id"]) == 1


def test_paas_sigterm_to_the_whole_worker_group_with_remap_sigterm_loses_nothing(make_stack):
    # Given a PaaS-style worker (REMAP_SIGTERM=SIGQUIT, 1 s soft shutdown) generating a long job
    stack = make_stack(REMAP_SIGTERM="SIGQUIT", GENLINE_WORKER_SOFT_SHUTDOWN_S=1)
    worker = stack.start_worker(concurrency=1, name="paas")
    stack.start_beat()
    headers = stack.new_tenant()
    job = stack.submit(headers, {"prompt": "dyno restart", "params": {"size": "32x32", "simulate": {"latency_s": 8}}})
    wait_generating(stack, job["id"])
    # When the platform sends SIGTERM to every process of the worker, which then exits
    os.killpg(worker.pid, signal.SIGTERM)
    worker.proc.wait(30)
    # And a new worker starts (the restarted dyno)
    stack.start_worker(concurrency=1, name="paas-next")
    # Then the interrupted job is run again and completes
    done = stack.wait(headers, job["id"], timeout=60)
    assert done["status"] == "completed", done["error"]
    assert generate_starts(stack, job["id"]) == 2


def test_database_down_answers_503_with_the_error_shape(redis_server, log_dir, tmp_path):
    # Given an API whose database refuses connections
    dead = f"postgresql://postgres@127.0.0.1:{services.free_port()}/nothing"
    stack = Stack(base_env(dead, redis_server.url.replace("/0", "/5"), tmp_path.as_uri()), log_dir)
    headers = {"Authorization": "Bearer static-test-key"}
    # When jobs are read or submitted
    from pipeline.core.ids import new_id
    for response in (stack.client.get(f"/v1/jobs/{new_id('job')}", headers=headers),
                     stack.client.post("/v1/jobs", headers=headers, json={"prompt": "x"}),
                     stack.client.get("/v1/jobs", headers=headers)):
        # Then 503 with Retry-After and the one error shape, never a 500
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.get_json()["error"]["code"] == "service_unavailable"
        assert response.headers["Retry-After"]


def _database_connections(url: str, allow: bool) -> None:
    name = url.rsplit("/", 1)[1]
    conn = services._admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {"true" if allow else "false"}')
            if not allow:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    finally:
        conn.close()


def test_worker_rides_out_a_database_outage_mid_job(make_stack):
    # Given a job generating, with the reaper running
    stack = make_stack()
    stack.start_worker(concurrency=1, name="db-outage")
    stack.start_beat()
    headers = stack.new_tenant()
    job = stack.submit(headers, {"prompt": "db outage", "params": {"size": "32x32", "simulate": {"latency_s": 3}}})
    wait_generating(stack, job["id"])
    # When its database refuses every connection for a few seconds (this test's database only)
    url = stack.env["DATABASE_URL"]
    _database_connections(url, allow=False)
    try:
        time.sleep(4)  # the outage lasts this long: a duration of the scenario, not a wait for something
    finally:
        _database_connections(url, allow=True)
    # Then the worker retries once the database is back and the job ends completed, not in a wrong state
    with stack.app.app_context():
        from pipeline.store.models import db
        db.engine.dispose()
    done = stack.wait(headers, job["id"], timeout=60)
    assert done["status"] == "completed", done["error"]
    types = [e["type"] for e in stack.events(job["id"])]
    assert types.count("completed") == 1 and "failed" not in types
    assert done["status"] in TERMINAL
