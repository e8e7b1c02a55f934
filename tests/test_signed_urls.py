"""Output URLs of file storage and job read tokens are signed and expire."""
from __future__ import annotations

import time

from itsdangerous import TimestampSigner

from pipeline.config import Config
from web import create_app


def test_file_urls_and_job_tokens_stop_working_after_their_ttl(stack, tenant, monkeypatch):
    # Given a completed job, read through an app whose URLs and tokens live one second
    done = stack.wait(tenant, stack.submit(tenant, {"prompt": "short-lived", "params": {"size": "16x16"}})["id"])
    app = create_app(Config.from_env({**stack.env, "GENLINE_URL_TTL_S": "1", "GENLINE_TOKEN_TTL_S": "1"}))
    client = app.test_client()
    job = client.get(f"/v1/jobs/{done['id']}", headers=tenant).get_json()
    file_url = job["outputs"][0]["url"].split("://", 1)[1].split("/", 1)[1]
    self_url = job["urls"]["self"].split("://", 1)[1].split("/", 1)[1]

    # When they are used at once, they work without an API key
    assert client.get("/" + file_url).status_code == 200
    assert client.get("/" + self_url).get_json()["id"] == done["id"]

    # Then, once the TTL has passed (the signer's clock moved on, not waited for: the app runs
    # in this process), the file URL is 404 and the token 401, in the error shape
    later = int(time.time()) + 3
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    expired_file = client.get("/" + file_url)
    assert expired_file.status_code == 404 and expired_file.get_json()["error"]["code"] == "not_found"
    expired_token = client.get("/" + self_url)
    assert expired_token.status_code == 401 and expired_token.get_json()["error"]["code"] == "unauthorized"


def test_a_token_reads_only_its_own_job(stack, tenant):
    a = stack.submit(tenant, {"prompt": "a", "params": {"size": "16x16"}})
    b = stack.submit(tenant, {"prompt": "b", "params": {"size": "16x16"}})
    token = a["urls"]["self"].split("token=", 1)[1]
    assert stack.client.get(f"/v1/jobs/{a['id']}?token={token}").status_code == 200
    assert stack.client.get(f"/v1/jobs/{b['id']}?token={token}").status_code == 401
    assert stack.client.get(f"/v1/jobs?token={token}").status_code == 401
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert stack.client.get(f"/v1/jobs/{a['id']}?token={tampered}").status_code == 401
