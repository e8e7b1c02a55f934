"""Hostile values that used to reach the database or the logs: every one is a
clear 4xx now, and browser-facing views and logs carry no credentials or
server-side settings."""
from __future__ import annotations

import socket
import subprocess

import pytest
import requests

from pipeline.config import Config
from tests import services
from web import create_app

BODY = {"prompt": "hostile", "params": {"size": "16x16"}}

RAW = [
    # (name, body): each must be 422 invalid_input, never 5xx
    ("NaN in metadata", b'{"prompt": "x", "metadata": {"a": NaN}}'),
    ("Infinity in metadata", b'{"prompt": "x", "metadata": {"a": [Infinity]}}'),
    ("-Infinity in params", b'{"prompt": "x", "params": {"seed": -Infinity}}'),
    ("NUL in model", b'{"prompt": "x", "model": "a\\u0000b"}'),
    ("NUL in a metadata value", b'{"prompt": "x", "metadata": {"k": "a\\u0000"}}'),
    ("NUL in a metadata key", b'{"prompt": "x", "metadata": {"k\\u0000": 1}}'),
    ("NUL in the webhook url", b'{"prompt": "x", "webhook": {"url": "http://127.0.0.1/\\u0000"}}'),
    ("lone surrogate in metadata", b'{"prompt": "x", "metadata": {"k": "\\udc00"}}'),
    ("lone surrogate in model", b'{"prompt": "x", "model": "\\ud800"}'),
]


@pytest.mark.parametrize("name, body", RAW, ids=[c[0] for c in RAW])
def test_values_the_database_cannot_hold_are_422(stack, tenant, name, body):
    answer = stack.client.post("/v1/jobs", data=body, headers={**tenant, "Content-Type": "application/json"})
    assert answer.status_code == 422, answer.get_data(as_text=True)[:300]
    assert answer.get_json()["error"]["code"] == "invalid_input"


def test_a_nul_in_the_idempotency_key_is_422(stack, tenant):
    answer = stack.client.post("/v1/jobs", json=BODY, headers={**tenant, "Idempotency-Key": "a\x00b"})
    assert answer.status_code == 422, answer.get_data(as_text=True)[:300]


EXTREME = ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00.000001+00:01"]


@pytest.mark.parametrize("when", EXTREME)
def test_extreme_offsets_in_time_filters_are_422(stack, tenant, when):
    for name in ("created_after", "created_before"):
        listed = stack.client.get("/v1/jobs", query_string={name: when}, headers=tenant)
        assert listed.status_code == 422, (name, listed.get_data(as_text=True)[:300])
    bulk = stack.client.post("/v1/jobs/cancel", json={"created_before": when}, headers=tenant)
    assert bulk.status_code == 422, bulk.get_data(as_text=True)[:300]


def test_the_read_token_view_omits_webhook_and_metadata(stack, tenant):
    job = stack.submit(tenant, {**BODY, "metadata": {"customer": "c-42"},
                                "webhook": {"url": "http://127.0.0.1:9/hook?secret=s3cr3t"}})
    path = job["urls"]["self"].split("://", 1)[1].split("/", 1)[1]
    seen = stack.client.get("/" + path)
    assert seen.status_code == 200
    text = seen.get_data(as_text=True)
    assert "s3cr3t" not in text and "c-42" not in text
    assert seen.get_json()["webhook"] is None and seen.get_json()["metadata"] is None
    # The key holder still sees both
    own = stack.job(tenant, job["id"])
    assert own["metadata"] == {"customer": "c-42"} and "s3cr3t" in own["webhook"]["url"]


@pytest.fixture
def demo(stack):
    app = create_app(Config.from_env({**stack.env, "GENLINE_DEMO": "1", "GENLINE_DEMO_RATE_LIMIT": "1000/minute"}))
    return app.test_client()


@pytest.mark.parametrize("form, field", [
    ({"budget": {"timeout_s": 600}}, "budget.timeout_s"),
    ({"budget": {"deadline_s": 3600}}, "budget.deadline_s"),
    ({"budget": {"max_attempts": 5}}, "budget.max_attempts"),
    ({"simulate": {"hang": True}}, "simulate.hang"),
    ({"simulate": {"latency_s": 3000}}, "simulate.latency_s"),
])
def test_the_demo_tenant_has_its_own_caps(demo, form, field):
    answer = demo.post("/demo/jobs", json={"prompt": "demo", "size": "256x256", **form})
    assert answer.status_code == 422, answer.get_data(as_text=True)[:300]
    assert field in answer.get_json()["error"]["fields"]


def test_a_demo_job_without_a_budget_gets_the_demo_caps(demo):
    job = demo.post("/demo/jobs", json={"prompt": "demo", "size": "256x256"}).get_json()
    assert job["budget"]["timeout_s"] <= 30 and job["budget"]["deadline_s"] <= 120
    assert job["webhook"] is None and job["metadata"] is None


def chunked_post(url: str, headers: dict, body: bytes) -> int:
    """POST ``body`` with Transfer-Encoding: chunked (no Content-Length); the status code."""
    host, port = url.split("://", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\n{head}Content-Type: application/json\r\n"
                 "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode())
    try:
        for i in range(0, len(body), 65536):
            part = body[i:i + 65536]
            sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server may answer and close before reading everything
    answer = sock.recv(4096).decode("latin-1")
    sock.close()
    return int(answer.split(" ", 2)[1])


def test_through_gunicorn_chunked_bodies_and_file_links_in_the_access_log(stack, tenant, log_dir):
    web, url = services.start_gunicorn(stack.env, log_dir)
    auth = {"Authorization": tenant["Authorization"]}
    try:
        # A chunked body over the limit is refused whole, one within it is accepted
        assert chunked_post(url, auth, b'{"prompt": "' + b"x" * (1024 * 1024 + 10) + b'"}') == 413
        assert chunked_post(url, auth, b'{"prompt": "chunked", "params": {"size": "16x16"}}') == 202

        # A signed file link fetched through gunicorn leaves no token in the access log
        job = stack.wait(tenant, stack.submit(tenant, BODY)["id"])
        file_url = job["outputs"][0]["url"]
        token = file_url.rsplit("/files/", 1)[1]
        path = "/files/" + token
        assert requests.get(url + path, timeout=10).status_code == 200
        services.wait_for(lambda: "/files/" in web.log(), 10, "the access line")
        assert token not in web.log() and "/files/<redacted>" in web.log()
        assert "Traceback" not in web.log()
    finally:
        web.stop()


def test_flower_binds_loopback_unless_told_otherwise(stack):
    line = next(x for x in (services.ROOT / "Procfile").read_text().splitlines() if x.startswith("flower:"))
    command = line.split(":", 1)[1].strip()
    expand = ["bash", "-c", f"echo {command.split('--basic-auth')[0]}"]
    default = subprocess.run(expand, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True).stdout
    assert "--address=127.0.0.1" in default
    paas = subprocess.run(expand, env={"PATH": "/usr/bin:/bin", "FLOWER_ADDRESS": "0.0.0.0"},
                          capture_output=True, text=True).stdout
    assert "--address=0.0.0.0" in paas
