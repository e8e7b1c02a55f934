"""Property: any interleaving of duplicated and reordered step messages, crashes,
cancels and reaper passes leaves a job with one terminal state and one terminal event.

Runs the real step runner, job store and reaper against a Postgres database of
its own (no worker: a "delivery" is a direct call of ``run_step``, as a worker
would make it; the messages they send go to a Redis database nobody consumes).
"""
from __future__ import annotations

import os
from datetime import timedelta
from types import SimpleNamespace

import pytest
from celery.exceptions import Ignore, Retry
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipeline.core.errors import InvalidInput, ProviderError
from pipeline.core.lifecycle import TERMINAL_EVENTS, Step
from pipeline.worker.taskstate import JobFailed
from tests import services
from tests.conftest import Stack, base_env

STEPS = [Step.VALIDATE, Step.GENERATE, Step.UPLOAD]
MESSAGE_IDS = ["m1", "m2", "m3"]  # few ids, so duplicates of one message are common

deliver = st.tuples(st.just("deliver"), st.sampled_from(STEPS), st.sampled_from(MESSAGE_IDS),
                    st.sampled_from(["ok", "ok", "retryable", "permanent"]))
crash = st.tuples(st.just("crash"), st.sampled_from(STEPS), st.sampled_from(MESSAGE_IDS))
other = st.sampled_from([("expire",), ("cancel",), ("reap",), ("deadline",)])


@st.composite
def operations(draw):
    """The chain's own messages, each sent 1-3 times, shuffled among crashes, cancels and reaper passes."""
    chain = [("deliver", step, draw(st.sampled_from(MESSAGE_IDS)), "ok")
             for step in STEPS for _ in range(draw(st.integers(1, 3)))]
    noise = draw(st.lists(st.one_of(deliver, crash, other), max_size=8))
    return draw(st.permutations(chain + noise))


@pytest.fixture(scope="module")
def store(redis_server, log_dir, tmp_path_factory):
    """An app on a database of its own; nothing consumes its Redis database."""
    services.ensure_postgres()
    url = services.create_database()
    stack = Stack(base_env(url, redis_server.url.replace("/0", "/7"),
                           tmp_path_factory.mktemp("prop").as_uri()), log_dir)
    stack.migrate()
    with stack.app.app_context():
        yield stack
    with stack.app.app_context():
        from pipeline.store.models import db
        db.engine.dispose()
    services.drop_database(url)


def new_job(tenant: str):
    from pipeline.store import jobs
    return jobs.create(jobs.NewJob(tenant_id=tenant, operation="generate", providers=["local"], prompt="p",
                                   params={"size": "32x32"}, inputs=None, timeout_s=5, deadline_s=60,
                                   max_attempts=2))


def work_for(step: Step, outcome: str):
    def work(job, owner, lease):
        if outcome == "retryable":
            raise ProviderError("flaky")
        if outcome == "permanent":
            raise InvalidInput("bad")
        return [] if step is Step.UPLOAD else {"step": step.value}
    return work


class Delivery:
    """The part of a Celery task that ``run_step`` uses, for a direct call as a worker would make it.

    ``retry`` answers as Celery's does with ``throw=False`` (the Retry to raise); the
    message it would send goes nowhere, like every other message of this test.
    """

    def __init__(self, message: str):
        self.request = SimpleNamespace(id=message, retries=0)

    def retry(self, exc=None, countdown=None, max_retries=None, throw=True, **options):
        return Retry(exc=exc, when=countdown)

    def send_event(self, type_, **fields):
        pass


def apply(op, job_id: str) -> None:
    from pipeline.service import control
    from pipeline.store import jobs
    from pipeline.store.models import utcnow
    from pipeline.worker import reaper, steps
    kind = op[0]
    if kind == "deliver":
        _, step, message, outcome = op
        try:
            steps.run_step(Delivery(message), job_id, step, work_for(step, outcome))
        except (JobFailed, Retry, Ignore):
            pass  # how a step task ends in Celery (pipeline.worker.taskstate): the worker records it, nothing more
    elif kind == "crash":  # a worker took the lease and died
        jobs.claim(job_id, op[1], op[2], 3.0)
    elif kind == "expire":  # time passes beyond any lease
        jobs.record(job_id, None, lease_until=utcnow() - timedelta(seconds=1))
    elif kind == "deadline":
        jobs.record(job_id, None, deadline_at=utcnow() - timedelta(seconds=1))
    elif kind == "cancel":
        try:
            control.cancel(job_id)
        except control.NotAllowed:
            pass
    elif kind == "reap":
        reaper.reap_once()


def jobs_status(job_id: str) -> str:
    from pipeline.store import jobs
    return jobs.get(job_id).status


def check_log(job_id: str, settled: bool) -> None:
    from pipeline.store import jobs
    job = jobs.get(job_id)
    events = jobs.events_after(job_id)
    assert [e["id"] for e in events] == list(range(1, len(events) + 1)), "event seqs are contiguous"
    terminal = [e["type"] for e in events if e["type"] in TERMINAL_EVENTS]
    if job.status in ("completed", "failed", "canceled"):
        assert terminal == [job.status], (job.status, terminal)
    else:
        assert not settled, f"still {job.status} after settling"
        assert terminal == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations())
def test_any_interleaving_leaves_one_terminal_state_and_one_terminal_event(store, ops):
    # Given a fresh job of a fresh tenant
    job = new_job(f"prop-{os.urandom(4).hex()}")
    # When any sequence of deliveries, duplicates, crashes, cancels and reaper passes hits it
    for op in ops:
        apply(op, job.id)
        # Then at every point its log holds at most one terminal event, matching its status
        check_log(job.id, settled=False)
    event(f"before settling: {jobs_status(job.id)}")
    # And once its deadline passes and the reaper runs, it is terminal with exactly one terminal event
    for op in (("expire",), ("deadline",), ("reap",), ("reap",)):
        apply(op, job.id)
    check_log(job.id, settled=True)
