"""Recovery times with the DEFAULT lease and reaper settings (not the shortened ones
``base_env`` gives the other tests), each within 15 s:

- a whole worker SIGKILLed mid-generate: the job runs again on another worker;
- the active beat SIGKILLed: a standby beat takes over its duty (the reaper).

``tests/bench/recovery.py --defaults`` measures the same times over several runs.
"""
from __future__ import annotations

import re
import time

from pipeline.config import Config
from tests import services
from tests.conftest import base_env
from tests.sends import sends_refused
from tests.services import wait_for
from tests.test_recovery import generate_starts

DEFAULTS = {"GENLINE_LEASE_S": "", "GENLINE_REAPER_INTERVAL_S": ""}
"""Empty: the variables unset, so each process uses the defaults of pipeline/config.py."""
LIMIT_S = 15.0


def test_the_stack_under_test_runs_the_default_lease_and_reaper_interval():
    env = base_env("postgresql://x/y", "redis://127.0.0.1:1/0", "file:///tmp", **DEFAULTS)
    cfg, defaults = Config.from_env(env), Config.from_env({})
    assert (cfg.lease_s, cfg.reaper_interval_s) == (defaults.lease_s, defaults.reaper_interval_s)
    # And they can meet the limit: a lease runs out at most lease_s after the kill, the reaper comes within its interval
    assert cfg.lease_s + cfg.reaper_interval_s <= LIMIT_S - 3


def test_whole_worker_sigkilled_mid_generate_runs_again_elsewhere_within_15s(make_stack):
    # Given defaults, a job generating on worker A, and worker B ready
    stack = make_stack(**DEFAULTS)
    victim = stack.start_worker(concurrency=1, name="victim")
    stack.start_beat()
    headers = stack.new_tenant()
    job = stack.submit(headers, {"prompt": "machine loss", "params": {"size": "32x32", "simulate": {"latency_s": 25}}})
    wait_for(lambda: generate_starts(stack, job["id"]) >= 1, 60, "generate on the victim")
    stack.start_worker(concurrency=1, name="rescuer")
    assert generate_starts(stack, job["id"]) == 1
    # When worker A and its pool are SIGKILLed together
    victim.kill_group()
    killed = time.monotonic()
    # Then the job's generate starts again on B within 15 s, and the job completes there
    wait_for(lambda: generate_starts(stack, job["id"]) >= 2, LIMIT_S, "generate restarted elsewhere", 0.05)
    restarted = time.monotonic() - killed
    assert restarted <= LIMIT_S, restarted
    done = stack.wait(headers, job["id"], timeout=60)
    assert done["status"] == "completed", done["error"]


def start_standby(stack):
    """A second beat, waited for only until it started (it stands by for the lock)."""
    beat = services.start_beat(stack.env, stack.log_dir, active=False)
    stack.processes.append(beat)
    return beat


def _sends(beat) -> int:
    return len(re.findall(r"Sending due task reap", beat.log()))


def test_active_beat_sigkilled_a_standby_beat_takes_over_within_15s(make_stack):
    # Given defaults, a worker, an active beat and a standby beat
    stack = make_stack(**DEFAULTS)
    stack.start_worker(concurrency=2, name="beats")
    active = stack.start_beat()
    standby = start_standby(stack)
    # Then only the active one sends the periodic tasks
    services.assert_stays(lambda: _sends(standby) == 0 and "Acquired lock" not in standby.log(), 4,
                          "the standby beat idle")
    assert _sends(active) >= 1 and _sends(standby) == 0, standby.log_tail()
    # When the active beat is SIGKILLed, and a job is submitted whose message is lost
    active.kill_group()
    killed = time.monotonic()
    headers = stack.new_tenant()
    with sends_refused(stack.env["REDIS_URL"]):
        job = stack.submit(headers, {"prompt": "no beat", "params": {"size": "32x32"}})
    # Then the standby takes the lock and runs the reaper, which sends the lost message, within 15 s
    wait_for(lambda: _sends(standby) >= 1, LIMIT_S, "the standby to send the reaper", 0.05)
    took_over = time.monotonic() - killed
    wait_for(lambda: len(stack.events(job["id"])) >= 2, LIMIT_S + 5, "the lost job to start", 0.05)
    resent = time.monotonic() - killed
    assert took_over <= LIMIT_S and resent <= LIMIT_S, (took_over, resent)
    done = stack.wait(headers, job["id"], timeout=30)
    assert done["status"] == "completed", done["error"]
