"""The error classes (pipeline.core.errors): each carries its code and whether it is retried."""
from __future__ import annotations

import pytest

from pipeline.core import errors

RETRIED = {"provider_error", "rate_limited", "network_error", "timeout", "storage_error"}


def test_only_transient_failures_are_retried():
    assert {code for code, cls in errors.ERRORS.items() if cls.retryable} == RETRIED


@pytest.mark.parametrize("code", sorted(errors.ERRORS))
def test_each_code_maps_back_to_its_class(code):
    error = errors.error_for(code, "why")
    assert isinstance(error, errors.GenlineError) and error.code == code
    assert error.as_dict("generate") == {"code": code, "message": "why", "retryable": code in RETRIED,
                                         "step": "generate"}


def test_an_unknown_code_is_an_internal_error():
    assert type(errors.error_for("no_such_code")) is errors.InternalError


def test_without_a_message_the_class_says_what_happened():
    assert errors.Timeout().message == errors.Timeout.__doc__
    assert errors.RateLimited("429", retry_after=3.0).retry_after == 3.0
