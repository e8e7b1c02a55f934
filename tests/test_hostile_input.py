"""Hostile input: every answer is a clear 4xx in the one error shape (never a 500),
every limit is named in its message, and prompts are data, stored and returned as text."""
from __future__ import annotations

import json

import pytest
import requests

from tests import services
from web.schemas import MAX_INPUT_IMAGES, MAX_METADATA_BYTES, MAX_N, MAX_PROMPT_CHARS

IMG = "data:image/png;base64,iVBORw0KGgo="


def deep(levels: int) -> bytes:
    return b'{"prompt": "x", "metadata": ' + b'{"a": ' * levels + b"1" + b"}" * levels + b"}"


RAW = [
    # (name, body, content type, status, code)
    ("oversized body", b'{"prompt": "' + b"x" * (1024 * 1024 + 10) + b'"}', "application/json", 413, "payload_too_large"),
    ("deep json within the body limit", deep(50), "application/json", 422, "invalid_input"),
    ("json deeper than the parser", deep(100_000), "application/json", 400, "invalid_json"),
    ("text/plain", b'{"prompt": "x"}', "text/plain", 415, "unsupported_media_type"),
    ("form", b"prompt=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ("xml", b"<job><prompt>x</prompt></job>", "application/xml", 415, "unsupported_media_type"),
    ("no content type", b'{"prompt": "x"}', None, 415, "unsupported_media_type"),
    ("invalid utf-8", b'{"prompt": "\xc3\x28"}', "application/json", 400, "invalid_json"),
    ("utf-16", '{"prompt": "x"}'.encode("utf-16"), "application/json", 400, "invalid_json"),
    ("lone surrogate escape", b'{"prompt": "\\ud800"}', "application/json", 422, "invalid_input"),
    ("NUL in prompt", b'{"prompt": "a\\u0000b"}', "application/json", 422, "invalid_input"),
    ("NaN", b'{"prompt": "x", "budget": {"timeout_s": NaN}}', "application/json", 422, "invalid_input"),
    ("huge number", b'{"prompt": "x", "params": {"n": 1' + b"0" * 5000 + b"}}", "application/json", 400, "invalid_json"),
    ("top-level string", b'"prompt"', "application/json", 422, "invalid_input"),
    ("empty body", b"", "application/json", 400, "invalid_json"),
]


@pytest.mark.parametrize("name, body, content_type, status, code", RAW, ids=[c[0] for c in RAW])
def test_hostile_bodies(stack, tenant, name, body, content_type, status, code):
    headers = dict(tenant)
    if content_type:
        headers["Content-Type"] = content_type
    response = stack.client.post("/v1/jobs", data=body, headers=headers)
    assert (response.status_code, response.get_json()["error"]["code"]) == (status, code), response.get_data(as_text=True)[:300]


def test_body_limit_is_named(stack, tenant):
    response = stack.client.post("/v1/jobs", data=b"x" * (1024 * 1024 + 1),
                                 headers={**tenant, "Content-Type": "application/json"})
    assert response.status_code == 413 and "GENLINE_MAX_BODY_BYTES" in response.get_json()["error"]["message"]


LIMITS = [
    # (name, body changes, field, text the message must contain)
    ("prompt length", {"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt", str(MAX_PROMPT_CHARS)),
    ("n", {"params": {"n": MAX_N + 1}}, "params.n", str(MAX_N)),
    ("image side", {"params": {"size": "8192x16"}}, "params.size", "4096"),
    ("pixels", {"params": {"size": "4096x4096"}}, "params.size", "GENLINE_MAX_PIXELS"),
    ("image count", {"operation": "edit", "inputs": {"images": [IMG] * (MAX_INPUT_IMAGES + 1)}}, "inputs.images",
     str(MAX_INPUT_IMAGES)),
    ("metadata size", {"metadata": {"k": "x" * MAX_METADATA_BYTES}}, "metadata", str(MAX_METADATA_BYTES)),
    ("timeout cap", {"budget": {"timeout_s": 10**6}}, "budget.timeout_s", "GENLINE_MAX_TIMEOUT_S"),
    ("deadline cap", {"budget": {"deadline_s": 10**6}}, "budget.deadline_s", "GENLINE_MAX_DEADLINE_S"),
    ("attempts cap", {"budget": {"max_attempts": 1000}}, "budget.max_attempts", "GENLINE_MAX_MAX_ATTEMPTS"),
]


@pytest.mark.parametrize("name, changes, field, named", LIMITS, ids=[c[0] for c in LIMITS])
def test_every_limit_is_named_in_its_error(stack, tenant, name, changes, field, named):
    response = stack.client.post("/v1/jobs", json={"prompt": "a lighthouse", **changes}, headers=tenant)
    error = response.get_json()["error"]
    assert response.status_code == 422 and field in error["fields"], error
    assert named in error["message"] or named in error["fields"][field], error


TRAVERSAL = [
    "/v1/jobs/..%2F..%2Fetc%2Fpasswd",
    "/v1/jobs/../../etc/passwd",
    "/v1/jobs/job_%00",
    "/v1/jobs/' OR '1'='1",
    "/v1/jobs/{job}/outputs/..%2F..%2Fsecret",
    "/v1/jobs/{job}/outputs/-1",
    "/v1/jobs/{job}/outputs/99999999999999999999",
    "/v1/jobs/{job}/outputs/0%2F..%2F..",
    "/files/..%2F..%2F..%2Fetc%2Fpasswd",
    "/files/%2e%2e%2f%2e%2e%2fgenline.db",
]


@pytest.mark.parametrize("path", TRAVERSAL)
def test_path_traversal_in_ids_and_output_names(stack, tenant, path):
    job = stack.submit(tenant, {"prompt": "t", "params": {"size": "16x16"}})
    response = stack.client.get(path.replace("{job}", job["id"]), headers=tenant)
    assert response.status_code == 404, response.get_data(as_text=True)[:200]
    assert response.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("prompt", [
    "'; DROP TABLE jobs; --",
    "\" OR 1=1; DELETE FROM api_keys WHERE '1'='1",
    "<script>alert(document.cookie)</script>",
    "<img src=x onerror=alert(1)>{{7*7}}${7*7}",
    "Robert'); UPDATE jobs SET status='completed'; --\u202e\U0001f600",
])
def test_sql_and_script_looking_prompts_are_stored_and_returned_verbatim(stack, tenant, prompt):
    job = stack.submit(tenant, {"prompt": prompt, "params": {"size": "16x16"}})
    done = stack.wait(tenant, job["id"])
    assert done["status"] == "completed" and done["prompt"] == prompt
    response = stack.client.get(f"/v1/jobs/{job['id']}", headers=tenant)
    assert response.mimetype == "application/json"
    assert json.loads(response.data)["prompt"] == prompt
    # The tables are all still there and the job list still answers
    assert stack.client.get("/v1/jobs?limit=1", headers=tenant).status_code == 200


@pytest.mark.parametrize("query", ["limit=abc", "limit=100000", "cursor=%00%ff", "cursor=' OR 1=1 --",
                                   "status=queued' OR '1'='1", "created_after=yesterday", "wait=1e309", "wait=-1"])
def test_hostile_queries(stack, tenant, query):
    response = stack.client.get(f"/v1/jobs?{query}", headers=tenant)
    assert response.status_code == 422, response.get_data(as_text=True)[:200]


@pytest.mark.parametrize("value", ["Bearer " + "k" * 10_000, "Bearer \u00e9\u00e8", "Basic Zm9vOmJhcg==", "Bearer", "bearer  "])
def test_hostile_authorization_headers(stack, value):
    response = stack.client.get("/v1/jobs", headers={"Authorization": value})
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"


def test_huge_headers_and_lines_through_gunicorn(stack, tenant, log_dir):
    # Given the production web server (its header limits are in deploy/gunicorn.conf.py)
    web, url = services.start_gunicorn(stack.env, log_dir)
    try:
        auth = {"Authorization": tenant["Authorization"]}
        cases = {
            "one huge header": {**auth, "X-Big": "a" * 20_000},
            "many headers": {**auth, **{f"X-H{i}": "v" for i in range(150)}},
        }
        for name, headers in cases.items():
            answer = requests.get(f"{url}/v1/jobs", headers=headers, timeout=10)
            # Then it is refused as a client error, not a crash
            assert 400 <= answer.status_code < 500 and answer.status_code != 404, (name, answer.status_code)
        long_url = requests.get(f"{url}/v1/jobs?x={'a' * 20_000}", headers=auth, timeout=10)
        assert 400 <= long_url.status_code < 500
        # And the server still serves
        assert requests.get(f"{url}/v1/jobs", headers=auth, timeout=10).status_code == 200
        assert "Traceback" not in web.log()
    finally:
        web.stop()
