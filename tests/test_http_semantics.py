"""HTTP semantics that real clients rely on: Retry-After only where it means
something, WWW-Authenticate on 401, Prefer as a hint (RFC 7240), private caching
of outputs, idempotent replays past the rate limit, links from
GENLINE_PUBLIC_URL, ETag and 304 on the job, and a /readyz that tells nothing
about the servers behind it."""
from __future__ import annotations

import os

import pytest
from sqlalchemy.exc import OperationalError

from pipeline.config import Config, ConfigError
from tests import services
from web import create_app

BODY = {"prompt": "semantics", "params": {"size": "16x16"}}


def key_with(stack, rate_limit=None) -> dict:
    from web.keys import create_key
    with stack.app.app_context():
        _row, key = create_key(f"http-{os.urandom(4).hex()}", rate_limit=rate_limit)
    return {"Authorization": f"Bearer {key}"}


def test_a_202_carries_no_retry_after_but_the_rate_limit_headers(stack, tenant):
    answer = stack.client.post("/v1/jobs", json=BODY, headers=tenant)
    assert answer.status_code == 202
    assert "Retry-After" not in answer.headers
    assert "X-RateLimit-Limit" in answer.headers
    read = stack.client.get(f"/v1/jobs/{answer.get_json()['id']}", headers=tenant)
    assert "Retry-After" not in read.headers


def test_the_database_outage_503_keeps_its_documented_retry_after(stack, tenant):
    from web import limits

    # Given a submission route that meets a database outage
    app = create_app(Config.from_env(stack.env))

    @app.post("/v1/outage")
    @limits.submissions
    def outage():
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    # When a rate-limited key submits there
    answer = app.test_client().post("/v1/outage", json=BODY, headers=key_with(stack, "2/minute"))

    # Then the 503 says Retry-After: 5, not the limiter's window
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"


def test_401_names_the_bearer_scheme(stack):
    for headers in ({}, {"Authorization": "Bearer nope"}):
        answer = stack.client.get("/v1/jobs", headers=headers)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("prefer, applied", [
    ("wait=120", "wait=60"),
    ('wait="0.2"', "wait=0.2"),
    ("wait=0.2; foo=bar", "wait=0.2"),
    ("respond-async, wait=0.2", "wait=0.2"),
])
def test_prefer_wait_is_a_hint_capped_and_reported(stack, tenant, prefer, applied):
    job = stack.submit(tenant, BODY)
    stack.wait(tenant, job["id"])
    # A finished job answers at once whatever the wait, so the cap costs no time here
    answer = stack.client.get(f"/v1/jobs/{job['id']}", headers={**tenant, "Prefer": prefer})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.headers["Preference-Applied"] == applied


@pytest.mark.parametrize("prefer", ["wait=soon", "wait=-3", "wait=nan", "wait", "handling=strict"])
def test_a_preference_that_cannot_be_honoured_is_ignored(stack, tenant, prefer):
    answer = stack.client.post("/v1/jobs", json=BODY, headers={**tenant, "Prefer": prefer})
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert "Preference-Applied" not in answer.headers


def test_an_output_read_with_a_key_is_private_to_caches(stack, tenant):
    job = stack.wait(tenant, stack.submit(tenant, BODY)["id"])
    answer = stack.client.get(f"/v1/jobs/{job['id']}/outputs/0", headers=tenant)
    assert answer.status_code == 200
    assert "private" in answer.headers["Cache-Control"] and "public" not in answer.headers["Cache-Control"]


def test_an_idempotent_replay_is_answered_while_the_key_is_rate_limited(stack):
    # Given a key limited to one submission a minute, which submitted with an Idempotency-Key
    headers = key_with(stack, "1/minute")
    first = stack.client.post("/v1/jobs", json=BODY, headers={**headers, "Idempotency-Key": "once"})
    assert first.status_code == 202
    assert stack.client.post("/v1/jobs", json=BODY, headers=headers).status_code == 429

    # When the client retries the first request (a timeout on its side)
    again = stack.client.post("/v1/jobs", json=BODY, headers={**headers, "Idempotency-Key": "once"})

    # Then it gets its job back, while a new key still meets the limit
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    assert stack.client.post("/v1/jobs", json=BODY, headers={**headers, "Idempotency-Key": "new"}).status_code == 429


def test_links_come_from_the_public_url_never_the_host_header(stack, tenant):
    app = create_app(Config.from_env({**stack.env, "GENLINE_PUBLIC_URL": "https://genline.example.com/"}))
    client = app.test_client()
    job = client.post("/v1/jobs", json=BODY, headers={**tenant, "Host": "evil.example"}).get_json()
    assert job["urls"]["self"].startswith("https://genline.example.com/v1/jobs/")
    assert job["urls"]["events"].startswith("https://genline.example.com/v1/jobs/")
    done = stack.wait(tenant, job["id"])
    shown = client.get(f"/v1/jobs/{done['id']}", headers={**tenant, "Host": "evil.example"}).get_json()
    assert shown["outputs"][0]["url"].startswith("https://genline.example.com/files/")
    assert "evil" not in str(shown)


def test_production_requires_the_public_url(stack):
    # (a production config that passes every other check: a strong key, a chosen provider)
    env = {**stack.env, "GENLINE_PRODUCTION": "1", "SECRET_KEY": "k" + "0123456789abcdef" * 4,
           "GENLINE_DEFAULT_PROVIDER": "local"}
    env.pop("GENLINE_PUBLIC_URL", None)
    with pytest.raises(ConfigError, match="GENLINE_PUBLIC_URL"):
        Config.from_env(env)
    with pytest.raises(ConfigError, match="GENLINE_PUBLIC_URL"):
        Config.from_env({**env, "GENLINE_PUBLIC_URL": "genline.example.com"})


def test_the_job_has_an_etag_and_answers_304_until_it_changes(stack, tenant):
    job = stack.submit(tenant, {**BODY, "params": {"size": "16x16", "simulate": {"latency_s": 1.5}}})
    first = stack.client.get(f"/v1/jobs/{job['id']}", headers=tenant)
    etag = first.headers["ETag"]
    same = stack.client.get(f"/v1/jobs/{job['id']}", headers={**tenant, "If-None-Match": etag})
    # The job may move between two reads (each progress event is a new version; on a loaded machine it
    # moved twice in a row): ask again with the newest tag until two reads see the same version.
    for _ in range(20):
        if same.status_code != 200:
            break
        etag = same.headers["ETag"]
        same = stack.client.get(f"/v1/jobs/{job['id']}", headers={**tenant, "If-None-Match": etag})
    assert same.status_code == 304 and same.get_data() == b""
    stack.wait(tenant, job["id"])
    changed = stack.client.get(f"/v1/jobs/{job['id']}", headers={**tenant, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert changed.get_json()["status"] == "completed"


def test_readyz_tells_anonymous_callers_nothing_about_the_servers(tmp_path, pg_database):
    dead = services.free_port()
    app = create_app(Config.from_env({
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{services.free_port()}/secret_db_name",
        "REDIS_URL": f"redis://127.0.0.1:{dead}/0", "STORAGE_URL": tmp_path.as_uri(),
    }))
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    text = answer.get_data(as_text=True)
    assert "secret_db_name" not in text and "127.0.0.1" not in text and str(dead) not in text
    assert answer.get_json()["checks"]["database"].startswith("error")
