"""Failover decisions (pure): when a job moves on to its next provider."""
from __future__ import annotations

import email.utils
import time
from datetime import timedelta
from types import SimpleNamespace

from pipeline.adapters.providers.httpcall import ProviderUnusable, _retry_after
from pipeline.core.errors import InvalidInput, ProviderError, RateLimited, Timeout, UnsafeContent
from pipeline.store.models import utcnow
from pipeline.worker.failover import current_index, next_provider


def job(providers=("openai", "http", "local"), provider="openai", max_attempts=2, deadline_in_s=60, step_outputs=None):
    return SimpleNamespace(providers=list(providers), provider=provider, max_attempts=max_attempts,
                           deadline_at=utcnow() + timedelta(seconds=deadline_in_s), step_outputs=step_outputs or {})


def test_a_provider_keeps_its_turn_while_it_has_attempts_left():
    assert next_provider(job(), ProviderError("503"), tries=1) is None
    assert next_provider(job(), Timeout("slow"), tries=1) is None


def test_the_next_provider_comes_when_the_attempts_are_used_up():
    assert next_provider(job(), ProviderError("503"), tries=2) == "http"
    assert next_provider(job(provider="http", step_outputs={"provider_index": 1}), Timeout(), tries=2) == "local"


def test_the_last_provider_has_no_next():
    assert next_provider(job(provider="local", step_outputs={"provider_index": 2}), ProviderError(), tries=2) is None
    assert next_provider(job(providers=["openai"]), ProviderError(), tries=2) is None


def test_refusals_and_bad_input_never_fail_over():
    assert next_provider(job(), UnsafeContent("no"), tries=2) is None
    assert next_provider(job(), InvalidInput("bad size"), tries=2) is None


def test_unusable_credentials_skip_the_remaining_attempts():
    assert next_provider(job(max_attempts=5), ProviderUnusable("401"), tries=1) == "http"


def test_a_retry_after_past_the_deadline_moves_on_but_one_within_it_waits():
    assert next_provider(job(deadline_in_s=30), RateLimited("429", retry_after=600), tries=1) == "http"
    assert next_provider(job(deadline_in_s=30), RateLimited("429", retry_after=2), tries=1) is None


def test_the_current_provider_is_found_by_index_even_when_a_name_repeats():
    assert current_index(job(providers=["http", "http"], provider="http", step_outputs={"provider_index": 1})) == 1
    assert current_index(job(provider="http")) == 1


def test_retry_after_reads_seconds_and_http_dates():
    assert _retry_after("7") == 7.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= _retry_after(later) <= 31
