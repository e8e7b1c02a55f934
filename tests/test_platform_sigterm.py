"""A platform's SIGTERM at any moment loses nothing.

As a platform restarts a formation (Heroku: every dyno at least daily, on each
deploy): web (gunicorn), a worker and two beats run while jobs are submitted
over HTTP; mid-load every process gets SIGTERM (to its whole process group, as
a dyno's processes do), whatever is left after the platform's grace is
SIGKILLed, and the formation is started again. Every job ends terminal, none
completes twice, and no job's generate runs again after its upload began.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time

import pytest
import requests
from sqlalchemy import select

from tests import services
from tests.conftest import TERMINAL

GRACE_S = 30.0
"""Heroku's: SIGKILL follows SIGTERM after 30 s."""
LOAD_BEFORE_TERM_S = 6.0


class Submitter(threading.Thread):
    """Submits jobs over HTTP until stopped; keeps the ids of those answered 202."""

    def __init__(self, base_url: str, headers: dict):
        super().__init__(daemon=True)
        self.base_url, self.headers = base_url, headers
        self.accepted: list[str] = []
        self.refused = 0
        self.stopped = threading.Event()

    def run(self):
        rng = random.Random(13)
        while not self.stopped.is_set():
            body = {"prompt": "restart", "params": {"size": "32x32", "simulate": {"latency_s": rng.choice([0.2, 0.8, 1.5])}},
                    "budget": {"deadline_s": 300}}
            try:
                response = requests.post(f"{self.base_url}/v1/jobs", json=body, headers=self.headers, timeout=5)
                if response.status_code == 202:
                    self.accepted.append(response.json()["id"])
                else:
                    self.refused += 1
            except requests.RequestException:
                self.refused += 1  # the web is stopping or gone: the platform's router would answer 503
            self.stopped.wait(0.1)  # a submission every ~100 ms until stopped


def start_formation(stack) -> str:
    """web, one worker and two beats of the stack; returns the web's base URL."""
    web, url = services.start_gunicorn(stack.env, stack.log_dir, workers=2)
    stack.processes.append(web)
    stack.start_worker(concurrency=2, name=f"dyno-{os.urandom(2).hex()}")
    stack.start_beat()
    beat = services.start_beat(stack.env, stack.log_dir, active=False)
    stack.processes.append(beat)
    return url


def terminate_like_a_platform(processes, grace_s: float) -> dict:
    """SIGTERM every process's group at once; SIGKILL the groups still running after ``grace_s``."""
    for proc in processes:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.monotonic() + grace_s
    outcome = {}
    for proc in processes:
        try:
            proc.proc.wait(max(0.0, end - time.monotonic()))
            outcome[proc.name] = outcome.get(proc.name, []) + ["exited"]
        except subprocess.TimeoutExpired:
            proc.kill_group()
            outcome[proc.name] = outcome.get(proc.name, []) + ["killed"]
    return outcome


def tenant_jobs(stack, tenant: str) -> list[str]:
    from pipeline.store.models import Job, db
    with stack.app.app_context():
        ids = db.session.execute(select(Job.id).where(Job.tenant_id == tenant)).scalars().all()
        db.session.rollback()
    return list(ids)


@pytest.mark.slow
@pytest.mark.parametrize("remap,soft_s,worker_outlives_grace", [
    ("SIGQUIT", "", False),   # deploy/README.md's advice: soft shutdown 25 s, then running tasks are restored
    ("", "", False),          # plain SIGTERM: the pool processes die, their messages are requeued
    ("SIGQUIT", "45", True),  # a soft shutdown longer than the grace: the worker is SIGKILLed
], ids=["remap-sigterm-sigquit", "plain-sigterm", "sigkilled-after-the-grace"])
def test_sigterm_to_every_process_mid_load_then_restart_loses_nothing_and_doubles_nothing(
        make_stack, remap, soft_s, worker_outlives_grace):
    # Given a formation under a stream of submissions; its worker with REMAP_SIGTERM=SIGQUIT
    # (a cold shutdown after a soft one) or plain
    stack = make_stack(REMAP_SIGTERM=remap, GENLINE_WORKER_SOFT_SHUTDOWN_S=soft_s)
    headers = stack.new_tenant("paas")
    url = start_formation(stack)
    # One attempt longer than the grace: the worker is still busy when the SIGKILL comes
    long_job = requests.post(f"{url}/v1/jobs", headers=headers, timeout=10, json={
        "prompt": "longer than the grace", "budget": {"deadline_s": 300},
        "params": {"size": "32x32", "simulate": {"latency_s": GRACE_S + 10}}}).json()["id"]
    submitter = Submitter(url, headers)
    submitter.start()
    time.sleep(LOAD_BEFORE_TERM_S)  # the load phase: a duration of the scenario, not a wait for something
    # When every process gets SIGTERM mid-load, and what is left after the grace is SIGKILLed
    running = list(stack.processes)
    outcome = terminate_like_a_platform(running, GRACE_S)
    submitter.stopped.set()
    submitter.join(10)
    for proc in running:
        proc.stop()
    stack.processes.clear()
    assert outcome["worker"] == ["killed" if worker_outlives_grace else "exited"], outcome
    interrupted = [j for j in tenant_jobs(stack, headers["X-Tenant"]) if stack.job(headers, j)["status"] not in TERMINAL]
    assert interrupted, "no job was in flight when the formation stopped: the test proves nothing"
    # And the formation starts again
    start_formation(stack)
    # Then every job accepted is stored, and every stored job ends completed
    ids = tenant_jobs(stack, headers["X-Tenant"])
    assert len(submitter.accepted) >= 10 and set(submitter.accepted) <= set(ids), (len(submitter.accepted), outcome)
    for job_id in ids:
        done = stack.wait(headers, job_id, statuses=TERMINAL, timeout=150)
        assert done["status"] == "completed", (job_id, done["error"], outcome)
    # And none completed twice, and none generated again once its upload had begun
    for job_id in ids:
        events = stack.events(job_id)
        types = [e["type"] for e in events]
        assert types.count("completed") == 1 and types[-1] == "completed", (job_id, types)
        steps = [e["data"]["step"] for e in events if e["type"] == "started"]
        assert "generate" not in steps[steps.index("upload"):], (job_id, steps)
        if job_id == long_job:  # it was interrupted, and run again after the restart
            assert steps.count("generate") >= 2, steps
