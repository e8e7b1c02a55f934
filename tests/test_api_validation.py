"""Bad requests get the right status and error code, and no job row is made."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from pipeline.store.models import Job, db

GOOD = {"prompt": "a lighthouse", "params": {"size": "64x64"}}


def job_count(stack, tenant_headers) -> int:
    with stack.app.app_context():
        return db.session.execute(
            select(func.count()).select_from(Job).where(Job.tenant_id == tenant_headers["X-Tenant"])
        ).scalar_one()


def body(**changes):
    b = json.loads(json.dumps(GOOD))
    for path, value in changes.items():
        target = b
        keys = path.split("__")
        for k in keys[:-1]:
            target = target.setdefault(k, {})
        target[keys[-1]] = value
    return b


CASES = [
    # (name, raw body or dict, content type, status, code, field named)
    ("malformed json", b'{"prompt": ', "application/json", 400, "invalid_json", None),
    ("invalid utf-8", b'{"prompt": "\xff\xfe"}', "application/json", 400, "invalid_json", None),
    ("not json", b"prompt=hello", "application/x-www-form-urlencoded", 415, "unsupported_media_type", None),
    ("array body", b"[1, 2]", "application/json", 422, "invalid_input", "body"),
    ("missing prompt", {"params": {"size": "64x64"}}, None, 422, "invalid_input", "prompt"),
    ("empty prompt", body(prompt=""), None, 422, "invalid_input", "prompt"),
    ("blank prompt", body(prompt="   "), None, 422, "invalid_input", "prompt"),
    ("prompt too long", body(prompt="x" * 4001), None, 422, "invalid_input", "prompt"),
    ("prompt wrong type", body(prompt=42), None, 422, "invalid_input", "prompt"),
    ("unknown field", body(colour="red"), None, 422, "invalid_input", "colour"),
    ("unknown param", body(params__quality="hd"), None, 422, "invalid_input", "params.quality"),
    ("bad operation", body(operation="upscale"), None, 422, "invalid_input", "operation"),
    ("bad size", body(params__size="big"), None, 422, "invalid_input", "params.size"),
    ("size too small", body(params__size="8x8"), None, 422, "invalid_input", "params.size"),
    ("n too large", body(params__n=50), None, 422, "invalid_input", "params.n"),
    ("n wrong type", body(params__n="2"), None, 422, "invalid_input", "params.n"),
    ("bad format", body(params__format="gif"), None, 422, "invalid_input", "params.format"),
    ("unknown provider", body(provider="dalle-9"), None, 422, "invalid_input", "provider"),
    ("timeout above cap", body(budget__timeout_s=100000), None, 422, "invalid_input", "budget.timeout_s"),
    ("deadline above cap", body(budget__deadline_s=100000), None, 422, "invalid_input", "budget.deadline_s"),
    ("attempts above cap", body(budget__max_attempts=99), None, 422, "invalid_input", "budget.max_attempts"),
    ("negative timeout", body(budget__timeout_s=-1), None, 422, "invalid_input", "budget.timeout_s"),
    ("bad priority", body(priority="urgent"), None, 422, "invalid_input", "priority"),
    ("edit without images", body(operation="edit"), None, 422, "invalid_input", "inputs.images"),
    ("inpaint without mask", body(operation="inpaint", inputs={"images": ["data:image/png;base64,AA=="]}),
     None, 422, "invalid_input", "inputs.mask"),
    ("generate with inputs", body(inputs={"images": ["data:image/png;base64,AA=="]}), None, 422, "invalid_input", "inputs"),
    ("simulate not a dict", body(params__simulate=5), None, 422, "invalid_input", "params.simulate"),
    ("metadata too large", body(metadata={"k": "x" * 20000}), None, 422, "invalid_input", "metadata"),
]


@pytest.mark.parametrize("name, payload, content_type, status, code, field", CASES, ids=[c[0] for c in CASES])
def test_bad_submission(stack, tenant, name, payload, content_type, status, code, field):
    if isinstance(payload, dict):
        response = stack.client.post("/v1/jobs", json=payload, headers=tenant)
    else:
        response = stack.client.post("/v1/jobs", data=payload, headers={**tenant, "Content-Type": content_type})
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["message"]
    if field:
        assert field in error["fields"], error
        assert field in error["message"] or field == "body"
    assert job_count(stack, tenant) == 0


def test_an_oversized_body_is_413_in_the_error_shape(stack, tenant):
    big = json.dumps({"prompt": "x", "metadata": {"blob": "y" * (2 * 1024 * 1024)}})
    response = stack.client.post("/v1/jobs", data=big, headers={**tenant, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert "GENLINE_MAX_BODY_BYTES" in response.get_json()["error"]["message"]
    assert job_count(stack, tenant) == 0


def test_simulate_is_refused_where_the_deployment_does_not_allow_it(tmp_path, redis_server, pg_database):
    from pipeline.config import Config
    from web import create_app
    cfg = Config.from_env({"DATABASE_URL": pg_database, "REDIS_URL": redis_server.url,
                           "STORAGE_URL": tmp_path.as_uri(), "GENLINE_API_KEYS": "x:key-x"})
    app = create_app(cfg)
    response = app.test_client().post("/v1/jobs", json=body(params__simulate={"latency_s": 1}),
                                      headers={"Authorization": "Bearer key-x"})
    assert response.status_code == 422
    assert "GENLINE_ALLOW_SIMULATE" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}])
def test_v1_needs_a_valid_key(stack, headers):
    for method, path in [("post", "/v1/jobs"), ("get", "/v1/jobs"), ("get", "/v1/jobs/job_01m84b41j9x4wnv3a61f1mm8re")]:
        response = getattr(stack.client, method)(path, json=GOOD, headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"


def test_static_keys_from_the_environment_work(stack):
    response = stack.client.get("/v1/jobs", headers={"Authorization": "Bearer static-test-key"})
    assert response.status_code == 200


@pytest.mark.parametrize("job_id", ["job_01m84b41j9x4wnv3a61f1mm8re", "nope", "..%2F..%2Fetc", "job_" + "z" * 300])
def test_unknown_job_ids_are_404(stack, tenant, job_id):
    response = stack.client.get(f"/v1/jobs/{job_id}", headers=tenant)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_unknown_routes_and_methods_use_the_error_shape(stack, tenant):
    assert stack.client.get("/v1/nothing", headers=tenant).get_json()["error"]["code"] == "not_found"
    response = stack.client.delete("/v1/jobs", headers=tenant)
    assert response.status_code == 405 and response.get_json()["error"]["code"] == "method_not_allowed"


def test_a_good_submission_returns_202_with_location_and_every_field(stack, tenant):
    response = stack.client.post("/v1/jobs", json=GOOD, headers=tenant)
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"].endswith(f"/v1/jobs/{job['id']}")
    expected = {"id", "status", "operation", "provider", "model", "prompt", "prompt_sha256", "params", "inputs",
                "budget", "step", "attempt", "progress", "queue_position", "error", "outputs", "metadata",
                "webhook", "created_at", "started_at", "completed_at", "deadline_at", "timing", "urls"}
    assert expected <= set(job)
    assert job["budget"] == {"timeout_s": 60.0, "deadline_s": 120.0, "max_attempts": 2}
    assert set(job["urls"]) == {"self", "events", "cancel"}
    assert job_count(stack, tenant) == 1
