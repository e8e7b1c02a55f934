"""An attempt's end written past a soft time limit (pipeline.worker.softlimit), with a real signal.

Celery's prefork pool raises ``SoftTimeLimitExceeded`` from a signal handler in the
pool process's main thread; here a SIGALRM handler raises it the same way, while the
end is being written. The end-to-end test on a real worker is in tests/test_budgets_e2e.py.
"""
from __future__ import annotations

import signal
import threading
import time

import pytest
from billiard.exceptions import SoftTimeLimitExceeded
from flask import Flask, current_app

from pipeline.worker import softlimit


@pytest.fixture
def pool_process(monkeypatch):
    """This process as a prefork pool child after ``worker_process_init``, and a soft limit armed like Celery's."""
    monkeypatch.setattr(softlimit, "_writer", {})
    softlimit.enable(Flask("softlimit-test"))

    def soft_limit(signum, frame):
        raise SoftTimeLimitExceeded()
    previous = signal.signal(signal.SIGALRM, soft_limit)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def slow_end(seconds: float, done: list) -> str:
    time.sleep(seconds)  # a write stalled in the database
    done.append(current_app.name)
    return "written"


def test_a_soft_limit_landing_while_the_end_is_written_lets_it_finish(pool_process, caplog):
    # Given an end that takes 0.3 s to write, and a soft limit that lands 0.1 s into it
    done: list = []
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    # When it is written through the shield
    with caplog.at_level("INFO", logger="genline.softlimit"):
        result = softlimit.shielded("job_1", slow_end, 0.3, done)
    # Then it ran to its end in an app context and returned, and the limit was let pass with a line
    assert result == "written" and done == ["softlimit-test"]
    assert "soft time limit after the attempt ended" in caplog.text and "job_id=job_1" in caplog.text


def test_without_the_shield_the_same_limit_abandons_the_end(pool_process):
    # The scenario the shield exists for: the same limit, the same end, written in place
    done: list = []
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    with pytest.raises(SoftTimeLimitExceeded):
        slow_end(0.3, done)
    assert done == []


def test_what_the_end_raises_is_raised_to_the_caller(pool_process):
    def failing_end():
        raise ValueError("the write failed")
    with pytest.raises(ValueError, match="the write failed"):
        softlimit.shielded("job_1", failing_end)


def test_outside_a_pool_process_the_end_is_written_in_place(monkeypatch):
    # Given no pool process (the gevent I/O worker, a test calling a step directly)
    monkeypatch.setattr(softlimit, "_writer", {})
    # Then the end runs on the caller's own thread
    assert softlimit.shielded("job_1", lambda: threading.current_thread()) is threading.current_thread()
