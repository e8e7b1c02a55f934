"""The pure arithmetic of budgets: attempt limits, backoff with jitter, the deadline check, marker TTLs."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from pipeline.adapters.dispatch import ETA_MARGIN_S, marker_ttl_s
from pipeline.core import budget
from pipeline.worker.steps import generate_tries

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_attempt_limits_take_the_timeout_when_the_deadline_is_far():
    soft, hard = budget.attempt_limits(10, NOW + timedelta(seconds=100), NOW)
    assert (soft, hard) == (10, 10 + budget.HARD_LIMIT_GRACE_S)


def test_attempt_limits_shrink_to_the_time_left_before_the_deadline():
    soft, hard = budget.attempt_limits(60, NOW + timedelta(seconds=7), NOW)
    assert soft == pytest.approx(7) and hard == pytest.approx(7 + budget.HARD_LIMIT_GRACE_S)


def test_attempt_limits_never_go_to_zero_past_the_deadline():
    soft, _ = budget.attempt_limits(60, NOW - timedelta(seconds=5), NOW)
    assert soft == 0.1


@pytest.mark.parametrize("attempt, low, high", [(1, 0.5, 1), (2, 1, 2), (3, 2, 4), (4, 4, 8)])
def test_backoff_doubles_per_attempt_with_jitter_in_the_upper_half(attempt, low, high):
    rng = random.Random(1)
    delays = [budget.backoff_s(attempt, rng=rng) for _ in range(200)]
    assert all(low <= d <= high for d in delays)
    assert max(delays) - min(delays) > (high - low) / 2  # jitter really spreads the retries


def test_backoff_is_capped():
    assert budget.backoff_s(30, cap=60, rng=random.Random(0)) <= 60


def test_retry_after_wins_when_longer_than_the_backoff():
    assert budget.retry_delay_s(1, 30.0, rng=random.Random(0)) == 30.0
    assert budget.retry_delay_s(1, 0.01, rng=random.Random(0)) >= 0.5


def test_a_backoff_that_would_end_past_the_deadline_is_not_taken():
    deadline = NOW + timedelta(seconds=3)
    assert budget.fits_before_deadline(2.0, deadline, NOW)
    assert not budget.fits_before_deadline(2.8, deadline, NOW)
    assert not budget.fits_before_deadline(0.1, NOW - timedelta(seconds=1), NOW)


def test_attempts_lost_with_a_worker_or_made_before_a_retry_do_not_count():
    job = SimpleNamespace(attempt=5, lost_count=1, step_outputs={"tries_offset": 3})
    assert generate_tries(job) == 1
    assert generate_tries(SimpleNamespace(attempt=2, lost_count=0, step_outputs={})) == 2


def test_an_eta_message_marker_expires_soon_after_its_eta():
    # Given a job far from its deadline
    job = SimpleNamespace(deadline_at=datetime.now(timezone.utc) + timedelta(seconds=3000))
    # Then a plain message's marker lives until past the deadline, an ETA message's only past its ETA
    assert marker_ttl_s(job, 0, lease_s=30) >= 3000
    assert marker_ttl_s(job, 4.0, lease_s=3) == int(4 + ETA_MARGIN_S)
    assert marker_ttl_s(job, 4.0, lease_s=30) == 64


def test_visibility_timeout_outlasts_the_longest_hard_limit():
    # Given the largest budget the config allows
    from pipeline.config import Config
    from pipeline.worker.celery_app import celery_settings
    cfg = Config.from_env({"GENLINE_MAX_TIMEOUT_S": "3000", "GENLINE_MAX_DEADLINE_S": "3000"})
    _, hard = budget.attempt_limits(cfg.max_timeout_s, NOW + timedelta(seconds=cfg.max_deadline_s), NOW)
    # Then Redis would redeliver an unacknowledged message only after any attempt was killed
    visibility = celery_settings(cfg)["broker_transport_options"]["visibility_timeout"]
    assert visibility > hard and visibility > cfg.max_deadline_s
