"""The demo's routes without a browser: off by default, per-IP limit, cancel only with the job's token."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from pipeline.config import Config


@pytest.fixture
def demo(stack):
    """A web app on the shared stack with the demo on and a small per-IP limit."""
    from web import create_app
    app = create_app(Config.from_env({**stack.env, "GENLINE_DEMO": "1", "GENLINE_DEMO_RATE_LIMIT": "3/minute"}))
    return app.test_client()


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_the_demo_is_off_unless_enabled(stack):
    assert stack.client.get("/").status_code == 404
    response = stack.client.post("/demo/jobs", json={"prompt": "x"})
    assert response.status_code == 404 and "GENLINE_DEMO" in response.get_json()["error"]["message"]


def test_the_page_and_its_client_module_are_served(demo):
    page = demo.get("/")
    assert page.status_code == 200 and b'id="job-form"' in page.data
    module = demo.get("/demo/static/genline-client.js")
    assert module.status_code == 200
    text = module.get_data(as_text=True)
    # The bundle of @genline/client (clients/js) that demo.js imports
    assert text.startswith("// genline-client.js: @genline/client")
    exports = text.rsplit("export {", 1)[1]
    for name in ("Genline,", "GenlineError,"):
        assert name in exports


def test_demo_submissions_are_limited_per_ip(demo):
    # Given a limit of 3 a minute for this address
    ip = {"REMOTE_ADDR": "198.51.100.7"}
    answers = [demo.post("/demo/jobs", json={"prompt": f"p{i}", "size": "256x256"}, environ_base=ip) for i in range(4)]

    # Then three are accepted as the demo tenant and the fourth is a 429 with Retry-After
    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert answers[3].get_json()["error"]["code"] == "rate_limited" and answers[3].headers.get("Retry-After")
    # And another address is not affected
    other = demo.post("/demo/jobs", json={"prompt": "other", "size": "256x256"}, environ_base={"REMOTE_ADDR": "198.51.100.8"})
    assert other.status_code == 202


def test_cancel_needs_the_jobs_own_token(demo, stack):
    # Given two running demo jobs
    ip = {"REMOTE_ADDR": "198.51.100.20"}
    slow = {"prompt": "slow", "size": "256x256", "simulate": {"latency_s": 20}}
    a = demo.post("/demo/jobs", json=slow, environ_base=ip).get_json()
    b = demo.post("/demo/jobs", json=slow, environ_base=ip).get_json()
    b_token = urlsplit(b["urls"]["cancel"]).query

    # Then neither no token nor another job's token cancels a
    assert demo.post(f"/demo/jobs/{a['id']}/cancel").status_code == 404
    assert demo.post(f"/demo/jobs/{a['id']}/cancel?{b_token}").status_code == 404

    # And a's own cancel URL does, once; the second time is a 409
    first = demo.post(path_of(a["urls"]["cancel"]))
    assert first.status_code == 202 and first.get_json()["status"] == "canceled"
    assert first.get_json()["error"]["code"] == "canceled"
    assert demo.post(path_of(a["urls"]["cancel"])).status_code == 409
    assert demo.post(path_of(b["urls"]["cancel"])).status_code == 202


def test_cancel_refuses_jobs_of_other_tenants(demo, stack, tenant):
    # Given a tenant's job and a valid token for it
    job = stack.submit(tenant, {"prompt": "not a demo job", "params": {"size": "16x16", "simulate": {"latency_s": 5}}})
    token = urlsplit(job["urls"]["self"]).query

    # Then the demo's cancel route does not touch it
    assert demo.post(f"/demo/jobs/{job['id']}/cancel?{token}").status_code == 404
    assert stack.job(tenant, job["id"])["status"] in ("queued", "processing")
    stack.client.post(f"/v1/jobs/{job['id']}/cancel", headers=tenant)  # free the shared worker


def test_a_blank_prompt_is_a_422_naming_the_prompt(demo):
    response = demo.post("/demo/jobs", json={"prompt": "   "}, environ_base={"REMOTE_ADDR": "198.51.100.30"})
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {"prompt": "must not be blank"}
