"""Flower tells the truth: a step task ends as its attempt did, as Flower's HTTP API shows it.

A real stack run by the two worker kinds (a prefork compute worker and a gevent
I/O worker, both with -E) and a real Flower reading their events: a generate
that fails twice and then succeeds is one task retried twice (two RETRY, then
SUCCESS), a failed job's generate is a FAILURE whose exception names the job's
error code, and a canceled attempt is REVOKED, on either worker kind.
"""
from __future__ import annotations

import re
import sys

import pytest
import requests

from tests import services
from tests.conftest import private_stack
from tests.fake_providers import TOKEN, ImageServer

AUTH = ("admin", "flower-test")


class Flower:
    """A Flower process of the stack, read through its HTTP API."""

    def __init__(self, env: dict, log_dir):
        self.port = services.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = services.Process("flower", [sys.executable, "-m", "celery", "-A", "pipeline.worker", "flower",
                                                f"--port={self.port}", "--address=127.0.0.1",
                                                f"--basic-auth={AUTH[0]}:{AUTH[1]}"], env, log_dir)

    def start(self) -> Flower:
        self.proc.start()
        services.wait_for(lambda: requests.get(self.base + "/api/workers", auth=AUTH, timeout=2).ok, 60, "flower")
        return self

    def task(self, task_id: str) -> dict | None:
        response = requests.get(f"{self.base}/api/task/info/{task_id}", auth=AUTH, timeout=10)
        return response.json() if response.status_code == 200 else None

    def state(self, task_id: str) -> str | None:
        return (self.task(task_id) or {}).get("state")

    def tasks_of(self, job_id: str, name: str = "genline.generate") -> list[dict]:
        """The tasks named ``name`` that Flower saw for a job (its id is the task's only argument)."""
        response = requests.get(f"{self.base}/api/tasks", params={"taskname": name}, auth=AUTH, timeout=10)
        return [t for t in response.json().values() if job_id in (t.get("args") or "")]

    def generate_of(self, job_id: str) -> dict:
        """The one generate task Flower saw for a job."""
        services.wait_for(lambda: self.tasks_of(job_id), 30, "flower to see the job's generate")
        [task] = self.tasks_of(job_id)
        return task

    def events(self, task_name: str) -> dict[str, float]:
        """Flower's own counter ``flower_events_total`` of ``task_name``, by event type (all workers)."""
        text = requests.get(self.base + "/metrics", auth=AUTH, timeout=10).text
        counts: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("flower_events_total{") and f'task="{task_name}"' in line:
                found = re.search(r'type="([^"]+)"', line)
                assert found, line
                kind = found.group(1)
                counts[kind] = counts.get(kind, 0.0) + float(line.rsplit(" ", 1)[1])
        return counts


@pytest.fixture(scope="module")
def server():
    s = ImageServer().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def watched(pg_database, server, tmp_path_factory, log_dir):
    """(stack, flower): a compute and an I/O worker, the http provider pointed at ``server``, and Flower."""
    with private_stack(tmp_path_factory.mktemp("flower"), log_dir, layout="kinds",
                       GENLINE_HTTP_PROVIDER_URL=server.url + "/infer", GENLINE_HTTP_PROVIDER_TOKEN=TOKEN) as stack:
        flower = Flower(stack.env, log_dir).start()
        stack.processes.append(flower.proc)
        stack.start_worker(concurrency=1, name="flower")  # the I/O worker, then the compute worker
        # Flower counts only the events it saw: wait until it sees a job's tasks.
        headers = stack.new_tenant()
        warm = stack.submit(headers, {"prompt": "warm up", "params": {"size": "16x16"}})
        assert stack.wait(headers, warm["id"])["status"] == "completed"
        services.wait_for(lambda: flower.generate_of(warm["id"])["state"] == "SUCCESS", 30, "flower to see a task")
        yield stack, flower


def test_a_generate_that_fails_twice_then_succeeds_is_retried_twice_by_celery(watched):
    stack, flower = watched
    before = flower.events("genline.generate")
    # Given a job whose first two generate attempts fail
    headers = stack.new_tenant()
    job = stack.submit(headers, {"prompt": "third time", "params": {"size": "32x32", "simulate": {"fail_attempts": 2}},
                                 "budget": {"max_attempts": 3}})
    # When it completes
    done = stack.wait(headers, job["id"])
    assert done["status"] == "completed", done["error"]
    assert done["attempt"] == 3
    # Then Flower shows one generate task, retried twice by Celery, that succeeded
    generate = flower.generate_of(job["id"])["uuid"]
    services.wait_for(lambda: flower.state(generate) == "SUCCESS", 30, "flower to see the generate succeed")
    assert flower.task(generate)["retries"] == 2
    assert len(flower.tasks_of(job["id"])) == 1
    after = flower.events("genline.generate")
    assert after.get("task-retried", 0) - before.get("task-retried", 0) == 2
    assert after.get("task-succeeded", 0) - before.get("task-succeeded", 0) == 1
    assert after.get("task-failed", 0) == before.get("task-failed", 0)


@pytest.mark.parametrize("provider", ["local", "http"])
def test_a_failed_job_ends_its_generate_as_failure_with_the_error_code(watched, provider):
    stack, flower = watched
    # Given a job whose only attempt fails (on the compute kind for local, on the I/O kind for http)
    headers = stack.new_tenant()
    body = ({"prompt": "fails", "params": {"size": "32x32", "simulate": {"fail_attempts": 1}}} if provider == "local"
            else {"prompt": "status:503", "provider": "http"})
    job = stack.submit(headers, {**body, "budget": {"max_attempts": 1}})
    done = stack.wait(headers, job["id"])
    assert done["status"] == "failed"
    # Then its generate task is a FAILURE whose exception starts with the job's error code
    generate = flower.generate_of(job["id"])["uuid"]
    services.wait_for(lambda: flower.state(generate) == "FAILURE", 30, "flower to see the generate fail")
    info = flower.task(generate)
    assert "JobFailed" in info["exception"] and f"{done['error']['code']}: " in info["exception"]


@pytest.mark.parametrize("provider", ["local", "http"])
def test_a_canceled_attempt_is_revoked(watched, server, provider):
    stack, flower = watched
    # Given a job generating (a long local attempt on the prefork kind, a hung call on the gevent kind)
    headers = stack.new_tenant()
    body = ({"prompt": "cancel me", "params": {"size": "32x32", "simulate": {"latency_s": 60}}} if provider == "local"
            else {"prompt": "hang flower", "provider": "http"})
    job = stack.submit(headers, body)
    stack.wait(headers, job["id"], statuses=("processing",))
    generate = flower.generate_of(job["id"])["uuid"]
    services.wait_for(lambda: flower.state(generate) == "STARTED", 30, "flower to see the generate start")
    # When it is canceled
    response = stack.client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    # Then Flower shows its generate REVOKED
    services.wait_for(lambda: flower.state(generate) == "REVOKED", 30, "flower to see the generate revoked")
    # and it stays so once the attempt has ended: a later job on the same worker kind is seen
    # complete, and each worker sends its events in order
    stopped = f"step stopped job_id={job['id']}"
    services.wait_for(lambda: any(stopped in p.log() for p in stack.processes), 30, "the attempt to stop")
    after = stack.submit(headers, {"prompt": "after the cancel", "params": {"size": "16x16"}}
                         if provider == "local" else {"prompt": "after the cancel", "provider": "http"})
    assert stack.wait(headers, after["id"])["status"] == "completed"
    services.wait_for(lambda: flower.generate_of(after["id"])["state"] == "SUCCESS", 30, "flower to see the later job")
    assert flower.state(generate) == "REVOKED"
    assert stack.job(headers, job["id"])["status"] == "canceled"
