"""The OpenAPI document: generated from the schemas that validate requests, rendered
at /docs, and honoured by the live app (schemathesis against gunicorn)."""
from __future__ import annotations

import re

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests import services
from web.schemas import MAX_PROMPT_CHARS

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 15
"""Per operation; keeps the whole fuzz run well under two minutes on a busy machine."""


def short_waits(doc: dict) -> dict:
    """Fuzz ?wait= and Prefer: wait= up to 1 s, not 60: jobs never finish here (no worker), and
    long-polls are tested elsewhere."""
    for methods in doc["paths"].values():
        for op in methods.values():
            for param in op.get("parameters", []):
                if param["name"] == "wait":
                    param["schema"]["maximum"] = 1
                if param["name"] == "Prefer":
                    param["schema"] = {"type": "string", "enum": ["wait=0", "wait=1"]}
    return doc


def sse_frames(doc: dict) -> dict:
    """Check each SSE frame against its shape: the document's x-event-schema (OpenAPI 3.1 cannot say it in
    ``schema``, which stays a string for client generators) is what schemathesis reads per event."""
    for methods in doc["paths"].values():
        for op in methods.values():
            for response in op.get("responses", {}).values():
                media = response.get("content", {}).get("text/event-stream")
                if media and "x-event-schema" in media:
                    media["schema"] = media.pop("x-event-schema")
    return doc


def describe(exc: BaseException) -> str:
    """The failure and every sub-failure of an exception group, briefly."""
    parts = [f"{exc.__class__.__name__}: {exc}"[:1500]]
    for sub in getattr(exc, "exceptions", ()):
        parts.append("  - " + describe(sub).replace("\n", "\n    "))
    return "\n".join(parts)


def test_the_document_lists_every_route_and_uses_the_request_models(stack):
    doc = stack.client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    routes = {(r.rule, m) for r in stack.app.url_map.iter_rules() if not r.endpoint.endswith("static")
              for m in r.methods - {"HEAD", "OPTIONS"}}
    documented = {(re.sub(r"{(\w+)}", r"<\1>", p), m.upper()) for p, ms in doc["paths"].items() for m in ms}
    normalized = {(re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", rule), m) for rule, m in routes}
    assert normalized == documented
    # The request body is the pydantic model's own schema, limits included
    create = doc["paths"]["/v1/jobs"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobCreate"}
    prompt = doc["components"]["schemas"]["JobCreate"]["properties"]["prompt"]
    assert prompt["maxLength"] == MAX_PROMPT_CHARS
    assert set(create["responses"]) >= {"202", "401", "413", "422", "429"}


def test_docs_page_renders_the_document_without_third_party_scripts(stack):
    page = stack.client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'src="/docs/static/docs.js"' in html and "https://" not in html
    script = stack.client.get("/docs/static/docs.js")
    assert script.status_code == 200 and "/openapi.json" in script.get_data(as_text=True)
    # Swagger UI comes from the flask-swagger-ui package, served here
    assert 'src="/docs/swagger-ui/swagger-ui-bundle.js"' in html
    bundle = stack.client.get("/docs/swagger-ui/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and b"SwaggerUIBundle" in bundle.get_data()
    # And the page teaches Prefer: wait on POST, as README does; the document lists the Prefer
    # header on POST beside ?wait (DESIGN §2 accepts both), and ?wait on GET
    assert "Prefer: wait=60" in html
    doc = stack.client.get("/openapi.json").get_json()
    post_params = [p["name"] for p in doc["paths"]["/v1/jobs"]["post"]["parameters"]]
    assert {"Prefer", "Idempotency-Key"} <= set(post_params)
    assert "wait" in [p["name"] for p in doc["paths"]["/v1/jobs/{job_id}"]["get"]["parameters"]]


def test_live_app_conforms_to_its_document(make_stack, log_dir):
    # Given a live gunicorn on a stack without workers (fuzzed jobs stay queued)
    stack = make_stack()
    web, url = services.start_gunicorn(stack.env, log_dir)
    headers = {"Authorization": stack.new_tenant("fuzz")["Authorization"]}
    try:
        schema = schemathesis.openapi.from_dict(sse_frames(short_waits(requests.get(f"{url}/openapi.json", timeout=10).json())))
        failures = []

        # When every operation is called with generated requests
        for result in schema.get_all_operations():
            operation = result.ok()

            @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy())
            def call(case):
                case.call_and_validate(base_url=url, headers=headers, checks=CHECKS, timeout=15)

            try:
                call()
            except Exception as exc:  # collect every operation's failure, not just the first
                failures.append(f"{operation.label}: {describe(exc)}")

        # And the job operations are called with a real job of the tenant
        job = requests.post(f"{url}/v1/jobs", json={"prompt": "fuzz"}, headers=headers, timeout=10).json()
        requests.post(f"{url}/v1/jobs/{job['id']}/cancel", headers=headers, timeout=10)
        for result in schema.get_all_operations():
            operation = result.ok()
            if "{job_id}" not in operation.path or operation.path.endswith("/retry") or operation.path.startswith("/demo"):
                continue
            path = {"job_id": job["id"], **({"n": "0"} if "{n}" in operation.path else {})}
            case = operation.Case(path_parameters=path)
            try:
                case.call_and_validate(base_url=url, headers=headers, checks=CHECKS, timeout=15)
            except Exception as exc:
                failures.append(f"{operation.label} with a real job: {describe(exc)}")

        # Then no answer was a 500 and every one matched the document
        assert not failures, "\n\n".join(failures)
        assert "Traceback" not in web.log()
    finally:
        web.stop()
