"""Budgets on real prefork workers: timeouts (soft and hard), deadlines, retries with backoff."""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import text

from pipeline.store.models import db
from tests.services import instant


@pytest.fixture(scope="module", params=["all", "kinds"])
def stack(request, stack):
    """Each test on both worker layouts: one prefork worker on every queue (the session's
    ``stack``), and the compute + I/O worker kinds (``kinds_stack``, docs/workers.md)."""
    return stack if request.param == "all" else request.getfixturevalue("kinds_stack")


def generate_starts(stack, job_id):
    return [e for e in stack.events(job_id) if e["type"] == "started" and e["data"]["step"] == "generate"]


def test_slow_provider_fails_with_timeout_after_exactly_max_attempts(stack, tenant):
    # Given a provider slower than the job's timeout, and two attempts allowed
    job = stack.submit(tenant, {"prompt": "slow", "params": {"size": "32x32", "simulate": {"latency_s": 30}},
                                "budget": {"timeout_s": 1, "deadline_s": 60, "max_attempts": 2}})
    # When the worker has run it
    done = stack.wait(tenant, job["id"], timeout=45)
    # Then it failed with timeout after two attempts, with one retry event between them
    assert done["status"] == "failed" and done["error"]["code"] == "timeout", done["error"]
    assert done["error"]["retryable"] is True and done["error"]["step"] == "generate"
    assert done["attempt"] == 2 and len(generate_starts(stack, job["id"])) == 2
    retries = [e for e in stack.events(job["id"]) if e["type"] == "retry"]
    assert len(retries) == 1 and retries[0]["data"]["error"]["code"] == "timeout"


def test_provider_ignoring_the_soft_limit_is_killed_and_counted_as_a_timeout(stack, tenant):
    # Given a provider that hangs past the soft limit (only the hard limit's kill ends it)
    job = stack.submit(tenant, {"prompt": "hang", "params": {"size": "32x32", "simulate": {"hang": True}},
                                "budget": {"timeout_s": 1, "deadline_s": 60, "max_attempts": 2}})
    # When the worker has run it
    done = stack.wait(tenant, job["id"], timeout=50)
    # Then each kill was a timeout attempt, not a lost worker: failed with timeout after exactly 2 attempts
    assert done["status"] == "failed" and done["error"]["code"] == "timeout", done["error"]
    assert "killed" in done["error"]["message"]
    assert done["attempt"] == 2 and len(generate_starts(stack, job["id"])) == 2
    assert [e["data"]["error"]["code"] for e in stack.events(job["id"]) if e["type"] == "retry"] == ["timeout"]


def test_deadline_shorter_than_the_attempts_ends_the_job_by_the_deadline(stack, tenant):
    # Given 5 attempts of 2 s each allowed, but a deadline of 3 s
    job = stack.submit(tenant, {"prompt": "late", "params": {"size": "32x32", "simulate": {"latency_s": 30}},
                                "budget": {"timeout_s": 2, "deadline_s": 3, "max_attempts": 5}})
    # When it runs
    done = stack.wait(tenant, job["id"], timeout=30)
    # Then it ends with deadline_exceeded no later than deadline_at + 5 s
    assert done["status"] == "failed" and done["error"]["code"] == "deadline_exceeded", done["error"]
    assert instant(done["completed_at"]) <= instant(done["deadline_at"]) + timedelta(seconds=5)
    assert done["error"]["retryable"] is False


def test_a_backoff_past_the_deadline_is_not_taken(stack, tenant):
    # Given a provider failing every attempt and a deadline too short for the second backoff (1-2 s)
    job = stack.submit(tenant, {"prompt": "fail", "params": {"size": "32x32", "simulate": {"fail_attempts": 9}},
                                "budget": {"timeout_s": 1, "deadline_s": 2.5, "max_attempts": 5}})
    # When it runs
    done = stack.wait(tenant, job["id"], timeout=30)
    # Then it fails with deadline_exceeded at once, before the deadline, instead of waiting past it
    assert done["status"] == "failed" and done["error"]["code"] == "deadline_exceeded", done["error"]
    assert "no time left" in done["error"]["message"]
    assert instant(done["completed_at"]) < instant(done["deadline_at"])


def test_fail_twice_then_succeed_completes_on_attempt_three(stack, tenant):
    # Given a provider that fails its first two attempts, and three allowed
    job = stack.submit(tenant, {"prompt": "third time", "params": {"size": "32x32", "simulate": {"fail_attempts": 2}},
                                "budget": {"timeout_s": 5, "deadline_s": 60, "max_attempts": 3}})
    # When it runs
    done = stack.wait(tenant, job["id"], timeout=45)
    # Then it completed on attempt 3, after two retry events carrying attempt, elapsed_ms and error
    assert done["status"] == "completed", done["error"]
    assert done["attempt"] == 3 and done["error"] is None
    retries = [e["data"] for e in stack.events(job["id"]) if e["type"] == "retry"]
    assert [r["attempt"] for r in retries] == [1, 2]
    for r in retries:
        assert r["error"]["code"] == "provider_error" and r["error"]["retryable"] is True
        assert isinstance(r["elapsed_ms"], int) and r["elapsed_ms"] >= 0 and r["delay_s"] > 0


def test_non_retryable_errors_are_never_retried(stack, tenant):
    # Given a provider refusing the prompt, with three attempts allowed
    job = stack.submit(tenant, {"prompt": "refused", "params": {"size": "32x32", "simulate": {
        "fail_attempts": 3, "fail_code": "unsafe_content"}}, "budget": {"max_attempts": 3}})
    # Then it fails after one attempt, without a retry event
    done = stack.wait(tenant, job["id"], timeout=30)
    assert done["status"] == "failed" and done["error"]["code"] == "unsafe_content"
    assert done["attempt"] == 1 and not [e for e in stack.events(job["id"]) if e["type"] == "retry"]


@contextmanager
def slow_generate_ends(stack, prompt: str, seconds: float):
    """Every write that ends a generate attempt of the job with ``prompt`` (it releases the
    lease) takes ``seconds`` in Postgres, as a write stalled under load does."""
    name = f"slow_end_{uuid.uuid4().hex[:8]}"
    with stack.app.app_context():
        db.session.execute(text(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
                                f"$$ BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$"))
        db.session.execute(text(f"CREATE TRIGGER {name} BEFORE UPDATE ON jobs FOR EACH ROW WHEN "
                                f"(OLD.prompt = '{prompt}' AND OLD.step = 'generate' AND OLD.lease_owner IS NOT NULL "
                                f"AND NEW.lease_owner IS NULL) EXECUTE FUNCTION {name}()"))
        db.session.commit()
    try:
        yield
    finally:
        with stack.app.app_context():
            db.session.execute(text(f"DROP TRIGGER {name} ON jobs"))
            db.session.execute(text(f"DROP FUNCTION {name}()"))
            db.session.commit()


def test_a_soft_limit_landing_while_an_attempts_end_is_written_does_not_abandon_it(stack, tenant):
    # Given a provider that fails its first attempt after 0.5 s and then succeeds, a 4-s
    # timeout (Celery's soft limit at 4 s, its hard limit at 6 s), and a database in which
    # the write that ends each generate attempt takes 3.8 s: Celery's soft limit lands
    # while the end of each attempt is being written (at least 0.3 s before it ends, and
    # what load delays moves the end away from the soft limit, toward the hard one)
    prompt = f"stalled end {uuid.uuid4().hex[:8]}"
    with slow_generate_ends(stack, prompt, 3.8):
        job = stack.submit(tenant, {"prompt": prompt, "params": {"size": "32x32", "simulate": {
            "latency_s": 0.5, "fail_attempts": 1}}, "budget": {"timeout_s": 4, "deadline_s": 90, "max_attempts": 2}})
        # When it runs
        done = stack.wait(tenant, job["id"], timeout=60)
    # Then the first attempt's failure was recorded and retried, and the second one's
    # image was recorded and uploaded: the soft limit abandoned neither end halfway
    assert done["status"] == "completed", done["error"]
    assert done["attempt"] == 2
    retries = [e["data"] for e in stack.events(job["id"]) if e["type"] == "retry"]
    assert [(r["attempt"], r["error"]["code"]) for r in retries] == [(1, "provider_error")]
