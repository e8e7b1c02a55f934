"""Signed, expiring tokens (pipeline.core.tokens): a job read token and a file token each
open one thing, under one secret, until their age passes max_age (an injected clock)."""
from __future__ import annotations

import pytest

from pipeline.core import tokens

SECRET = "unit-test-secret"


@pytest.fixture
def clock(monkeypatch):
    """The signer's clock (itsdangerous's public ``get_timestamp``), moved by the test instead of waiting."""
    now = [1_767_225_600]
    monkeypatch.setattr("itsdangerous.timed.TimestampSigner.get_timestamp", lambda self: now[0])
    return now


def test_a_job_token_names_its_job_until_it_expires(clock):
    token = tokens.job_token(SECRET, "job_1")
    assert tokens.job_from_token(SECRET, token, max_age=60) == "job_1"
    clock[0] += 60
    assert tokens.job_from_token(SECRET, token, max_age=60) == "job_1"
    clock[0] += 1
    assert tokens.job_from_token(SECRET, token, max_age=60) is None


def test_a_file_token_names_its_key_until_it_expires(clock):
    token = tokens.file_token(SECRET, "outputs/job_1/0.png")
    assert tokens.key_from_file_token(SECRET, token, max_age=5) == "outputs/job_1/0.png"
    clock[0] += 10
    assert tokens.key_from_file_token(SECRET, token, max_age=5) is None


def test_a_token_under_another_secret_or_tampered_with_opens_nothing():
    token = tokens.job_token(SECRET, "job_1")
    assert tokens.job_from_token("another-secret", token, max_age=60) is None
    assert tokens.job_from_token(SECRET, token[:-2] + ("AA" if not token.endswith("AA") else "BB"), max_age=60) is None
    assert tokens.job_from_token(SECRET, "not-a-token", max_age=60) is None


def test_a_job_token_is_not_a_file_token_nor_the_other_way_round():
    assert tokens.key_from_file_token(SECRET, tokens.job_token(SECRET, "job_1"), max_age=60) is None
    assert tokens.job_from_token(SECRET, tokens.file_token(SECRET, "job_1"), max_age=60) is None
