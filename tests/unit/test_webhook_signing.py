"""Webhook signing, the delivery backoff and the secret's format (no receiver needed;
tests/test_webhooks.py delivers to a real one)."""
from __future__ import annotations

import pytest

from pipeline.config import Config


def test_signature_matches_the_standard_webhooks_test_vector():
    from pipeline.adapters.webhooks import sign
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}') == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_backoff_grows_exponentially_over_hours():
    from pipeline.adapters.webhooks import backoff_s
    delays = [backoff_s(n, 10.0, rng=lambda: 0.5) for n in range(1, 8)]
    assert delays == sorted(delays) and delays[0] == 10.0
    assert sum(delays) > 3 * 3600


@pytest.mark.parametrize("bad", ["not-a-secret", "whsec_abc", "whsec_!!!!"])
def test_a_malformed_webhook_secret_stops_the_start_naming_the_variable(bad):
    from pipeline.config import ConfigError
    with pytest.raises(ConfigError, match="GENLINE_WEBHOOK_SECRET"):
        Config.from_env({"GENLINE_WEBHOOK_SECRET": bad})
