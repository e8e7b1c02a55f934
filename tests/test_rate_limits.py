"""Submission rate limits per API key, counted in Redis and shared by every web process."""
from __future__ import annotations

import os

import requests

from tests import services

BODY = {"prompt": "rate", "params": {"size": "16x16"}}


def key_with(stack, rate_limit=None) -> dict:
    from web.keys import create_key
    with stack.app.app_context():
        _row, key = create_key(f"rl-{os.urandom(4).hex()}", rate_limit=rate_limit)
    return {"Authorization": f"Bearer {key}"}


def test_a_keys_own_limit_answers_429_with_retry_after_in_the_error_shape(stack):
    # Given a key made with its own limit of 3 submissions a minute
    headers = key_with(stack, "3/minute")

    # When it submits 4 jobs
    answers = [stack.client.post("/v1/jobs", json=BODY, headers=headers) for _ in range(4)]

    # Then 3 are accepted with rate-limit headers, and the 4th is 429 naming the limit
    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert answers[0].headers["X-RateLimit-Limit"] == "3"
    assert answers[2].headers["X-RateLimit-Remaining"] == "0"
    refused = answers[3]
    error = refused.get_json()["error"]
    assert error["code"] == "rate_limited" and "3/minute" in error["message"]
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == "3"

    # And another key is not affected
    assert stack.client.post("/v1/jobs", json=BODY, headers=key_with(stack, "3/minute")).status_code == 202


def test_reads_are_not_counted_as_submissions(stack):
    headers = key_with(stack, "1/minute")
    job = stack.client.post("/v1/jobs", json=BODY, headers=headers).get_json()
    for _ in range(5):
        assert stack.client.get(f"/v1/jobs/{job['id']}", headers=headers).status_code == 200
    assert stack.client.post("/v1/jobs", json=BODY, headers=headers).status_code == 429


def test_the_limit_holds_across_two_web_processes(stack, log_dir):
    # Given two gunicorn processes on one Redis with a limit of 5 submissions a minute
    env = {**stack.env, "GENLINE_RATE_LIMIT": "5/minute"}
    a, url_a = services.start_gunicorn(env, log_dir)
    b, url_b = services.start_gunicorn(env, log_dir)
    try:
        headers = key_with(stack)

        # When one key submits 12 jobs, alternating between them
        codes = [requests.post(f"{url}/v1/jobs", json=BODY, headers=headers, timeout=10).status_code
                 for url in [url_a, url_b] * 6]

        # Then exactly 5 are accepted in all, and every other answer is 429
        assert codes.count(202) == 5, codes
        assert codes.count(429) == 7, codes
        assert codes[:5] == [202] * 5
    finally:
        a.stop()
        b.stop()


def test_a_bad_rate_in_the_environment_stops_the_start_with_its_name(stack):
    import pytest

    from pipeline.config import Config, ConfigError
    for name in ("GENLINE_RATE_LIMIT", "GENLINE_DEMO_RATE_LIMIT"):
        with pytest.raises(ConfigError, match=name):
            Config.from_env({**stack.env, name: "lots"})


def test_each_app_of_a_process_counts_in_its_own_redis(stack, make_stack):
    import hashlib

    import redis

    def counters(redis_url: str, secret: str) -> list:
        digest = hashlib.sha256(secret.encode()).hexdigest()[:32]
        return redis.Redis.from_url(redis_url).keys(f"*key:{digest}*")

    # Given a second app in this process on its own Redis, built after the session's app
    solo = f"solo-{os.urandom(4).hex()}"
    other = make_stack(GENLINE_API_KEYS=f"solo:{solo}", GENLINE_RATE_LIMIT="2/minute")
    ours = key_with(stack)["Authorization"].removeprefix("Bearer ")

    # When each app takes submissions
    codes = [other.client.post("/v1/jobs", json=BODY, headers={"Authorization": f"Bearer {solo}"}).status_code
             for _ in range(3)]
    assert stack.client.post("/v1/jobs", json=BODY, headers={"Authorization": f"Bearer {ours}"}).status_code == 202

    # Then the second app applies its own limit, and each app's counters are in its own Redis only
    assert codes == [202, 202, 429]
    assert counters(other.env["REDIS_URL"], solo) and not counters(stack.env["REDIS_URL"], solo)
    assert counters(stack.env["REDIS_URL"], ours) and not counters(other.env["REDIS_URL"], ours)
