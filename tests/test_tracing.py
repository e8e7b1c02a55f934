"""A job is one OpenTelemetry trace, from the submit request through every step to the
provider's HTTP call, the storage write and the webhook delivery.

Real processes (gunicorn, a gevent I/O worker and a prefork compute worker), each
configured only by the standard OTEL_* variables; the ``genline_jsonl`` exporter
writes the spans each process finishes to a file of its own, and the test puts
the trace together from those files. The trace crosses every Celery message in
its headers and reaches the provider and the webhook receiver as ``traceparent``.
"""
from __future__ import annotations

import json

import pytest
import requests

from tests import services
from tests.conftest import private_stack
from tests.fake_providers import TOKEN, ImageServer
from tests.test_webhooks import Receiver


def spans_in(directory) -> list[dict]:
    """Every span the stack's processes finished, read from their files."""
    return [json.loads(line) for path in sorted(directory.glob("spans-*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]


def request_span(spans: list[dict], job_id: str) -> dict:
    """The span of the request that submitted the job."""
    [found] = [s for s in spans if s["kind"] == "SpanKind.SERVER" and s["attributes"].get("genline.job_id") == job_id]
    return found


def trace_of(spans: list[dict], trace_id: str) -> list[dict]:
    return [s for s in spans if s["context"]["trace_id"] == trace_id]


def ancestors(span: dict, by_id: dict) -> list[dict]:
    """The span's parents up to its trace's root, nearest first."""
    chain, parent = [], span.get("parent_id")
    while parent:
        found = by_id.get(parent)
        assert found is not None, f"{span['name']}: parent {parent} is missing from the trace"
        chain.append(found)
        parent = found.get("parent_id")
    return chain


@pytest.fixture(scope="module")
def traced(pg_database, tmp_path_factory, log_dir):
    """(stack, web URL, spans dir, provider server, webhook receiver), every process exporting to files."""
    try:
        import opentelemetry.instrumentation.celery  # noqa: F401
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        services.missing("the otel extra is not installed: pip install -e '.[otel]'")
    server = ImageServer().start()
    receiver = Receiver().start()
    spans = tmp_path_factory.mktemp("spans")
    try:
        with private_stack(tmp_path_factory.mktemp("traced"), log_dir, layout="kinds",
                           GENLINE_HTTP_PROVIDER_URL=server.url + "/infer", GENLINE_HTTP_PROVIDER_TOKEN=TOKEN,
                           OTEL_TRACES_EXPORTER="genline_jsonl", GENLINE_OTEL_JSONL_DIR=str(spans),
                           OTEL_SERVICE_NAME="genline-test") as stack:
            stack.start_worker(concurrency=1, name="traced")
            web, url = services.start_gunicorn(stack.env, log_dir)
            stack.processes.append(web)
            yield stack, url, spans, server, receiver
    finally:
        receiver.stop()
        server.stop()


def submit(url: str, headers: dict, body: dict) -> dict:
    response = requests.post(f"{url}/v1/jobs", json=body, headers=headers, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def test_a_job_is_one_trace_from_the_request_to_the_webhook(traced):
    stack, url, directory, server, receiver = traced
    # Given a job on a remote provider with a webhook, submitted to the real web process
    headers = stack.new_tenant()
    job = submit(url, headers, {"prompt": "traced job", "provider": "http", "params": {"size": "32x32"},
                                "webhook": {"url": receiver.url}})
    # When it completes and its webhook is delivered
    assert stack.wait(headers, job["id"])["status"] == "completed"
    services.wait_for(lambda: any(job["id"].encode() in r["body"] for r in receiver.requests), 30, "the webhook")

    def names() -> set[str]:
        found = [s for s in spans_in(directory) if s["attributes"].get("genline.job_id") == job["id"]]
        return {s["name"] for s in trace_of(spans_in(directory), found[0]["context"]["trace_id"])} if found else set()
    services.wait_for(lambda: {"webhook.deliver", "run/genline.webhook"} <= names(), 30, "the webhook's spans")

    # Then the submit request's span is the root of one trace holding every step
    spans = spans_in(directory)
    submit_span = request_span(spans, job["id"])
    assert submit_span["parent_id"] is None and submit_span["attributes"]["http.route"] == "/v1/jobs"
    trace = trace_of(spans, submit_span["context"]["trace_id"])
    by_id = {s["context"]["span_id"]: s for s in trace}
    named = {}
    for s in trace:
        named.setdefault(s["name"], []).append(s)
    for step in ("validate", "generate", "upload", "notify"):
        [run] = named[f"run/genline.{step}"]
        assert run["attributes"]["genline.job_id"] == job["id"]
        assert ancestors(run, by_id)[-1] is submit_span
    # the steps follow each other: each step's task was sent from inside the step before it
    order = ["validate", "generate", "upload", "notify"]
    for before, after in zip(order, order[1:]):
        assert named[f"run/genline.{before}"][0] in ancestors(named[f"run/genline.{after}"][0], by_id)
    # the provider's HTTP call is inside the provider span of generate, and carried the trace to the provider
    [provider] = named["provider.run"]
    assert provider["attributes"]["genline.provider"] == "http"
    assert named["run/genline.generate"][0] in ancestors(provider, by_id)
    calls = [s for s in trace if s["kind"] == "SpanKind.CLIENT" and provider in ancestors(s, by_id)]
    called = calls[0]["attributes"] if calls else {}
    assert called.get("http.url", called.get("url.full", "")).endswith("/infer")
    [seen] = server.seen("traced job")
    assert submit_span["context"]["trace_id"].removeprefix("0x") in seen["headers"].get("traceparent", "")
    # the storage write is inside upload
    [put] = named["storage.put"]
    assert named["run/genline.upload"][0] in ancestors(put, by_id) and put["attributes"]["genline.job_id"] == job["id"]
    # the webhook delivery is sent from notify and its POST carried the trace to the receiver
    [deliver] = named["webhook.deliver"]
    assert named["run/genline.notify"][0] in ancestors(deliver, by_id)
    posts = [s for s in trace if s["kind"] == "SpanKind.CLIENT" and deliver in ancestors(s, by_id)]
    assert posts, "no HTTP span under webhook.deliver"
    [hook] = [r for r in receiver.requests if job["id"].encode() in r["body"]]
    assert submit_span["context"]["trace_id"].removeprefix("0x") in hook["headers"].get("traceparent", "")
    assert {s["resource"]["attributes"]["service.name"] for s in trace} == {"genline-test"}


def test_retried_attempts_stay_in_the_job_s_trace(traced):
    stack, url, directory, _server, _receiver = traced
    # Given a job whose first generate attempt fails and is retried
    headers = stack.new_tenant()
    job = submit(url, headers, {"prompt": "traced retry", "params": {"size": "32x32", "simulate": {"fail_attempts": 1}},
                                "budget": {"max_attempts": 2}})
    assert stack.wait(headers, job["id"])["status"] == "completed"

    def runs() -> list[dict]:
        return [s for s in spans_in(directory) if s["name"] == "run/genline.generate"
                and s["attributes"].get("genline.job_id") == job["id"]]
    services.wait_for(lambda: len(runs()) == 2, 30, "both generate attempts' spans")
    # Then both attempts are in the trace of the submit request, the second sent from inside the first
    first, second = sorted(runs(), key=lambda s: s["attributes"]["genline.attempt"])
    spans = spans_in(directory)
    submit_span = request_span(spans, job["id"])
    trace = trace_of(spans, submit_span["context"]["trace_id"])
    by_id = {s["context"]["span_id"]: s for s in trace}
    assert first in trace and second in trace
    assert first in ancestors(second, by_id)
    assert first["attributes"]["genline.outcome"] == "retry" and second["attributes"].get("genline.outcome") is None


@pytest.mark.parametrize("env, on", [
    ({}, False),
    ({"OTEL_SERVICE_NAME": "genline"}, False),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
])
def test_tracing_is_off_unless_the_otel_variables_configure_an_exporter(env, on):
    from pipeline.adapters import tracing
    assert tracing.configured(env) is on
