"""Every operation of the API, called with hostile values, answers 2xx, 3xx or 4xx
in the error shape, never 5xx (hypothesis against gunicorn).

The operations come from the live OpenAPI document, so a new route is fuzzed
without touching this file. Values: NUL, lone surrogates, NaN/Infinity, extreme
dates, offsets and numbers, traversal and SQL-looking text, deeply nested and
oversized bodies, and chunked bodies (no Content-Length).
"""
from __future__ import annotations

import json
import re
from urllib.parse import quote

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import services

EXAMPLES = 40
"""Random cases per operation, after the deterministic sweep (``sweep``)."""

HOSTILE_TEXT = ["", "\x00", "a\x00b", "\ud800", "x\udfffy", "NaN", "Infinity", "-Infinity", "1e309", "-1", "0",
                "9" * 400, "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59", "0000-00-00", "2026-02-30",
                "../../etc/passwd", "%00", "' OR 1=1 --", "<script>", "job_" + "0" * 26, "upl_x", "\u202e", "💥" * 50,
                "data:image/png;base64,!!", "http://169.254.169.254/", "https://[64:ff9b::7f00:1]/x"]
HOSTILE_NUMBERS = [float("nan"), float("inf"), float("-inf"), -1, 0, 2**63, -(2**63) - 1, 10**30, 1e308, 5e-324]
scalars = st.one_of(st.sampled_from(HOSTILE_TEXT), st.sampled_from(HOSTILE_NUMBERS), st.text(max_size=40),
                    st.integers(), st.floats(), st.booleans(), st.none())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)

BODY_PATHS = ["prompt", "model", "provider", "operation", "priority", "params", "params.size", "params.n",
              "params.seed", "params.format", "params.simulate", "params.simulate.latency_s", "budget",
              "budget.timeout_s", "budget.deadline_s", "budget.max_attempts", "metadata", "metadata.k",
              "webhook", "webhook.url", "webhook.events", "inputs", "inputs.images", "inputs.mask",
              "ids", "status", "created_before", "size", "image", "simulate"]


def base_body() -> dict:
    return {"prompt": "fuzz", "params": {"size": "16x16", "simulate": {"latency_s": 0}},
            "metadata": {"k": "v"}, "budget": {"timeout_s": 5}}


def place(body: dict, path: str, value) -> dict:
    """Put ``value`` at the dotted ``path`` of ``body`` (creating objects on the way)."""
    node = body
    *parents, leaf = path.split(".")
    for name in parents:
        if not isinstance(node.get(name), dict):
            node[name] = {}
        node = node[name]
    node[leaf] = value
    return body


def nested(levels: int) -> bytes:
    return b'{"prompt": "x", "metadata": ' + b'{"a": ' * levels + b"1" + b"}" * levels + b"}"


raw_bodies = st.one_of(
    st.builds(lambda p, v: json.dumps(place(base_body(), p, v), allow_nan=True).encode(), st.sampled_from(BODY_PATHS), values),
    st.builds(lambda key, v: json.dumps({"prompt": "x", "metadata": {key: v}}, allow_nan=True).encode(),
              st.sampled_from(HOSTILE_TEXT), values),
    st.builds(nested, st.sampled_from([10, 33, 200, 5000])),
    st.just(b'{"prompt": "' + b"x" * (1024 * 1024 + 1) + b'"}'),
    st.just(b'{"prompt": "x", "params": {"n": 1' + b"0" * 5000 + b"}}"),
    st.binary(max_size=64),
)


def raw_quote(value) -> str:
    """Percent-encode any text, lone surrogates included (as the bytes a hostile client would send)."""
    return quote(str(value).encode("utf-8", "surrogatepass"), safe="")


def header_safe(value) -> str | None:
    """The value as an HTTP header value, or None if no client could send it."""
    text = str(value)
    if any(c in text for c in "\x00\r\n") or not text.isprintable():
        return None
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return None
    return text


@st.composite
def requests_for(draw, operation: dict, job_ids: list[str]):
    """(path params, query, headers, body bytes or None, chunked) for one operation."""
    path_values, query, headers = {}, {}, {}
    for param in operation.get("parameters", []):
        name, where = param["name"], param["in"]
        if where == "path":
            path_values[name] = draw(st.one_of(st.sampled_from(job_ids), st.sampled_from(HOSTILE_TEXT), st.text(max_size=20)))
        elif draw(st.booleans()):
            value = draw(st.one_of(st.sampled_from(HOSTILE_TEXT), st.sampled_from(HOSTILE_TEXT),
                                   st.sampled_from(HOSTILE_NUMBERS), st.text(max_size=20)))
            if name in ("wait", "Prefer") and re.fullmatch(r"\s*(wait=)?\d+(\.\d+)?\s*", str(value)):
                value = "0.1"  # a real long-poll is tested elsewhere; here it would only slow the run
            if where == "query":
                query[name] = str(value)
            elif where == "header" and header_safe(value) is not None:
                headers[name] = header_safe(value)
    body = draw(raw_bodies) if "requestBody" in operation or draw(st.integers(0, 9)) == 0 else None
    return path_values, query, headers, body, draw(st.booleans())


SWEEP_LEAVES = ["\x00", "\ud800", float("nan"), float("inf"), 10**30, "0001-01-01T00:00:00+23:59", {"a": [[[[{}]]]]}]


def sweep(operation: dict, job_id: str):
    """Deterministic cases: every hostile text in every parameter, every hostile leaf at every body path."""
    for param in operation.get("parameters", []):
        for value in HOSTILE_TEXT:
            if param["in"] == "path":
                yield {param["name"]: value}, {}, {}, None, False
            elif param["in"] == "query" and param["name"] != "wait":
                yield {}, {param["name"]: value}, {}, None, False
            elif param["in"] == "header" and header_safe(value) is not None and param["name"] != "Prefer":
                yield {}, {}, {param["name"]: header_safe(value)}, None, False
    if "requestBody" in operation:
        for path in BODY_PATHS:
            for leaf in SWEEP_LEAVES:
                yield {}, {}, {}, json.dumps(place(base_body(), path, leaf), allow_nan=True).encode(), False
        yield {}, {}, {}, b'{"prompt": "' + b"x" * (1024 * 1024 + 1) + b'"}', True


def test_no_operation_answers_5xx_to_hostile_values(make_stack, log_dir):
    # Given gunicorn on a stack without workers, the demo on, and a canceled job of the tenant
    stack = make_stack(GENLINE_DEMO="1", GENLINE_DEMO_RATE_LIMIT="100000/minute")
    web, url = services.start_gunicorn(stack.env, log_dir)
    auth = {"Authorization": stack.new_tenant("fuzz")["Authorization"]}
    try:
        job = requests.post(f"{url}/v1/jobs", json={"prompt": "fuzz", "params": {"size": "16x16"}}, headers=auth,
                            timeout=10).json()
        requests.post(f"{url}/v1/jobs/{job['id']}/cancel", headers=auth, timeout=10)
        doc = requests.get(f"{url}/openapi.json", timeout=10).json()
        failures = []

        def send(method: str, path: str, case) -> None:
            path_values, query, headers, body, chunked = case
            target = path
            for name, value in path_values.items():
                target = target.replace("{" + name + "}", raw_quote(value))
            target = re.sub(r"{\w+}", raw_quote(job["id"]), target.replace("{n}", "0"))  # the unswept ones
            data = body
            if body is not None and chunked:
                data = iter([body[i:i + 65536] for i in range(0, len(body), 65536)] or [b""])
            if query:
                target += "?" + "&".join(f"{quote(k)}={raw_quote(v)}" for k, v in query.items())
            answer = requests.request(method.upper(), url + target, data=data, timeout=30,
                                      headers={**auth, "Content-Type": "application/json", **headers})
            # Then none is a server error
            assert answer.status_code < 500, (method, target, headers, (body or b"")[:200],
                                              answer.status_code, answer.text[:300])

        # When every operation is called with hostile values: first a sweep of each value in each place
        for path, methods in doc["paths"].items():
            for method, operation in methods.items():
                for case in sweep(operation, job["id"]):
                    try:
                        send(method, path, case)
                    except AssertionError as exc:
                        failures.append(f"{method.upper()} {path}: {exc}"[:1000])

        # Then random combinations
        for path, methods in doc["paths"].items():
            for method, operation in methods.items():
                @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
                @given(case=requests_for(operation, [job["id"]]))
                def call(case):
                    send(method, path, case)

                try:
                    call()
                except AssertionError as exc:
                    failures.append(f"{method.upper()} {path}: {exc}"[:2000])

        assert not failures, "\n\n".join(failures)
        assert "Traceback" not in web.log(), web.log()[-4000:]
    finally:
        web.stop()
