"""A tenant sees and acts on only its own jobs, uploads and webhook logs: every
route that takes an id answers 404 for another tenant's id.

The table is the app's own url map, so a route added later is covered without
editing this file.
"""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image

ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def id_routes(app):
    """(rule, method) of every /v1 route whose path holds an id."""
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/") or not ARG.search(rule.rule):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((rule.rule, method))
    return sorted(out)


@pytest.fixture(scope="module")
def owner(stack):
    """A tenant with a finished job and an upload."""
    headers = stack.new_tenant("owner")
    job = stack.submit(headers, {"prompt": "mine", "params": {"size": "16x16"},
                                 "webhook": {"url": "http://127.0.0.1:9/hook"}})
    job = stack.wait(headers, job["id"])
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    answer = stack.client.post("/v1/uploads", headers=headers,
                               data={"file": (io.BytesIO(buf.getvalue()), "a.png")}, content_type="multipart/form-data")
    assert answer.status_code == 201, answer.get_data(as_text=True)
    return {"headers": headers, "job": job, "upload_id": answer.get_json()["id"]}


def fill(rule: str, owner) -> str:
    values = {"job_id": owner["job"]["id"], "n": "0", "upload_id": owner["upload_id"]}
    return ARG.sub(lambda m: values.get(m.group(1), owner["job"]["id"]), rule)


def test_the_table_covers_the_job_routes(stack):
    routes = {rule for rule, _ in id_routes(stack.app)}
    assert "/v1/jobs/<job_id>" in routes and "/v1/jobs/<job_id>/outputs/<n>" in routes
    assert len(id_routes(stack.app)) >= 3


def test_every_id_route_answers_404_for_another_tenants_id(stack, owner):
    # Given another tenant
    stranger = stack.new_tenant("stranger")

    # When it calls every route that takes an id with the owner's ids
    answers = {}
    for rule, method in id_routes(stack.app):
        response = stack.client.open(fill(rule, owner), method=method, headers=stranger, json={})
        answers[(rule, method)] = (response.status_code, (response.get_json(silent=True) or {}).get("error", {}).get("code"))

    # Then every one is a 404 not_found, exactly like an id that does not exist
    wrong = {k: v for k, v in answers.items() if v != (404, "not_found")}
    assert not wrong, wrong
    # And the owner's job is unchanged (no cancel, retry or redelivery went through)
    again = stack.job(owner["headers"], owner["job"]["id"])
    assert again["status"] == owner["job"]["status"] and again["attempt"] == owner["job"]["attempt"]


def test_the_owner_reaches_the_same_routes(stack, owner):
    # The 404s above are about the tenant, not broken routes: the owner gets no 404 on reads
    for rule, method in id_routes(stack.app):
        if method != "GET" or "events" in rule:
            continue
        response = stack.client.get(fill(rule, owner), headers=owner["headers"])
        assert response.status_code != 404 or "upload" in rule, (rule, response.get_data(as_text=True)[:200])


def test_lists_and_bulk_actions_never_reach_another_tenants_jobs(stack, owner):
    stranger = stack.new_tenant("stranger")
    listed = stack.client.get("/v1/jobs?limit=100", headers=stranger).get_json()
    assert listed["data"] == []
    bulk = stack.client.post("/v1/jobs/cancel", json={"ids": [owner["job"]["id"]]}, headers=stranger)
    if bulk.status_code == 202:
        assert bulk.get_json()["canceled"] == 0
    assert stack.job(owner["headers"], owner["job"]["id"])["status"] == owner["job"]["status"]


def test_a_jobs_read_token_opens_that_job_only(stack, owner):
    other = stack.submit(owner["headers"], {"prompt": "second", "params": {"size": "16x16"}})
    token = owner["job"]["urls"]["self"].split("token=")[1]
    assert stack.client.get(f"/v1/jobs/{owner['job']['id']}?token={token}").status_code == 200
    assert stack.client.get(f"/v1/jobs/{other['id']}?token={token}").status_code == 401
    # A token is read-only: it does not cancel
    assert stack.client.post(f"/v1/jobs/{owner['job']['id']}/cancel?token={token}").status_code == 401


def test_another_tenants_upload_id_is_unknown_in_a_submission(stack, owner):
    # Given the owner's upload id, used by another tenant as an edit input
    stranger = stack.new_tenant("stranger")
    body = {"operation": "edit", "prompt": "steal", "inputs": {"images": [owner["upload_id"]]}, "params": {"size": "16x16"}}
    answer = stack.client.post("/v1/jobs", json=body, headers=stranger)

    # Then it is refused as an unknown upload, exactly like an id that does not exist
    unknown = stack.client.post("/v1/jobs", json={**body, "inputs": {"images": ["upl_" + "0" * 26]}}, headers=stranger)
    assert answer.status_code == unknown.status_code == 422
    unknown_message = unknown.get_json()["error"]["message"]
    assert answer.get_json()["error"]["message"] == unknown_message.replace("upl_" + "0" * 26, owner["upload_id"])
    # And the owner may use it
    assert stack.client.post("/v1/jobs", json=body, headers=owner["headers"]).status_code == 202
