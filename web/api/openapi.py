"""The OpenAPI 3.1 document, built at request time from the app's routes and the
pydantic models that validate requests (``web/schemas.py``) and describe
responses (``web/responses.py``) — never maintained by hand beside them.

Every route in ``app.url_map`` appears. Its metadata comes from ``describe()``
on the view, else from ``OPERATIONS`` below (routes written before this
module), else from the view's docstring with the generic error response.
"""
from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify
from pydantic import BaseModel

from pipeline.core import media
from web import responses as out
from web.schemas import BulkCancel, JobCreate, JobList

DOCS_DIR = Path(__file__).resolve().parent.parent / "static" / "docs"
bp = Blueprint("openapi", __name__, static_folder=str(DOCS_DIR), static_url_path="/docs/static")
# Swagger UI renders /docs: the copy the flask-swagger-ui package ships (no CDN), served as static files.
SWAGGER_UI_DIR = files("flask_swagger_ui") / "dist"
bp.register_blueprint(Blueprint("swagger_ui", __name__, static_folder=str(SWAGGER_UI_DIR),
                                static_url_path="/docs/swagger-ui"))

PUBLIC = "public"
"""``auth=PUBLIC``: the route needs no API key."""

WAIT = {"name": "wait", "in": "query", "required": False,
        "description": "hold the answer up to N seconds (≤ 60) until the job ends",
        "schema": {"type": "number", "minimum": 0, "maximum": 60}}
TOKEN = {"name": "token", "in": "query", "required": False,
         "description": "job-scoped read token from the job's urls (instead of a key)",
         "schema": {"type": "string"}}
IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False, "description": "same key + same body = the same job",
               "schema": {"type": "string", "maxLength": 255}}
PREFER = {"name": "Prefer", "in": "header", "required": False,
          "description": "RFC 7240 preferences; `wait=N` holds the answer up to N seconds (capped at 60) until the job "
                         "ends. A hint: a value that cannot be honoured is ignored, never refused. "
                         "`Preference-Applied` says what was honoured.",
          "schema": {"type": "string", "examples": ["wait=30"]}}
IF_NONE_MATCH = {"name": "If-None-Match", "in": "header", "required": False,
                 "description": "the job's last ETag: answered 304 while the job is unchanged", "schema": {"type": "string"}}
LAST_EVENT_ID = {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}}
BINARY = {"schema": {"type": "string", "format": "binary"}}
IMAGE = {"description": "the image bytes (application/octet-stream only for a stored type genline does not name)",
         "content": {**{m: BINARY for m in media.MEDIA_TYPES}, "application/octet-stream": BINARY}}
REDIRECT = {"description": "redirect to a presigned storage URL", "headers": {"Location": {"schema": {"type": "string"}}}}


def _header(description: str, kind: str = "string") -> dict:
    return {"description": description, "schema": {"type": kind}}


RATE_HEADERS = {
    "X-RateLimit-Limit": _header("submissions allowed in the window", "integer"),
    "X-RateLimit-Remaining": _header("submissions left in the window", "integer"),
    "X-RateLimit-Reset": _header("when the window resets, in Unix seconds", "integer"),
}
RETRY_AFTER = {"Retry-After": _header("seconds to wait before trying again", "integer")}
CREATED_HEADERS = {"Location": _header("the job's path"), "Preference-Applied": _header("the honoured `Prefer`, e.g. wait=30"),
                   **RATE_HEADERS}
ERROR_HEADERS = {429: {**RETRY_AFTER, **RATE_HEADERS}, 503: RETRY_AFTER}


def with_headers(model: type[BaseModel], headers: dict) -> dict:
    """A response described by ``model`` that also carries ``headers``."""
    return {"model": model, "headers": headers}


def describe(summary: str, *, body: type[BaseModel] | dict | None = None, query: type[BaseModel] | None = None,
             params: list | None = None, responses: dict | None = None, errors: tuple = (), auth: str = "key"):
    """Attach OpenAPI metadata to a view.

    ``body``: a pydantic model (JSON) or a raw ``content`` map; ``responses``:
    status -> a response model, a raw response object, or None; ``errors``:
    statuses answered with the error shape.
    """
    def mark(view):
        view.openapi = dict(summary=summary, body=body, query=query, params=params or [],
                            responses=responses or {}, errors=errors, auth=auth)
        return view
    return mark


def _meta(summary, **kwargs) -> dict:
    return describe(summary, **kwargs)(lambda: None).openapi


UPLOAD_BODY = {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary", "description": "PNG, JPEG or WebP"}}}}}
SSE_EVENT = {"type": "string", "description": "a text/event-stream: frames of `id:` (the event's seq), `event:` "
                                             "(its type) and `data:` (the event as JSON), with `: heartbeat` comments. "
                                             "While the job is queued, `estimation` frames (not in the log; their id "
                                             "repeats the last logged event's) carry `queue_position`, "
                                             "`estimated_start_at` and `estimated_finish_at` in `data` "
                                             "when the estimate first exists and when it moves by more than 10%"}
SSE_FRAME = {"type": "object", "description": "one frame of the stream; data is the event as JSON",
             "properties": {"id": {"type": "string"}, "event": {"type": "string"},
                            "data": {"type": "string", "contentMediaType": "application/json"}}}
"""OpenAPI 3.1 has no per-event schema (3.2's itemSchema): the body is a string for generators, and
``x-event-schema`` gives one frame's shape to readers and to the conformance test."""
READ = (401, 404, 422)
OPERATIONS = {
    "jobs.create_job": _meta("Create a job", body=JobCreate, params=[WAIT, PREFER, IDEMPOTENCY],
                             responses={202: with_headers(out.Job, CREATED_HEADERS), 200: with_headers(out.Job, CREATED_HEADERS)},
                             errors=(400, 401, 409, 413, 415, 422, 429, 503)),
    "jobs.read_job": _meta("Read a job", params=[WAIT, PREFER, TOKEN, IF_NONE_MATCH],
                           responses={200: with_headers(out.Job, {"ETag": _header("changes when the job does"),
                                                                  "Preference-Applied": _header("the honoured `Prefer`")}),
                                      304: {"description": "not modified since the ETag in If-None-Match"}},
                           errors=READ),
    "jobs.list_jobs": _meta("List jobs, newest first", query=JobList, responses={200: out.JobPage}, errors=(401, 422)),
    "actions.cancel_job": _meta("Cancel a job", responses={202: out.Job}, errors=(401, 404, 409)),
    "actions.retry_job": _meta("Resume a failed or canceled job from the step that did not finish",
                               responses={202: out.Job}, errors=(401, 404, 409)),
    "actions.cancel_jobs": _meta("Cancel jobs by filter", body=BulkCancel, responses={202: out.BulkCanceled},
                                 errors=(400, 401, 413, 415, 422)),
    "outputs.read_output": _meta("An output's bytes (file storage) or a redirect to them (S3)", params=[TOKEN],
                                 responses={200: IMAGE, 302: REDIRECT}, errors=READ),
    "outputs.read_file": _meta("Bytes behind a signed output URL", responses={200: IMAGE}, errors=(404,), auth=PUBLIC),
    "events.job_events": _meta("Server-Sent Events of a job, resumable with Last-Event-ID", params=[TOKEN, LAST_EVENT_ID],
                               responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT,
                                                                                    "x-event-schema": SSE_FRAME}}},
                                          204: {"description": "the job ended and every event was sent"}},
                               errors=READ),
    "uploads.create_upload": _meta("Upload an input image for edit or inpaint", body=UPLOAD_BODY,
                                   responses={201: {"content": {"application/json": {"schema": {
                                       "type": "object", "required": ["id", "media_type", "width", "height", "bytes"]}}}}},
                                   errors=(401, 413, 415, 422, 503)),
    "webhooks.delivery_log": _meta("The webhook delivery log of a job", errors=READ,
                                   responses={200: {"content": {"application/json": {"schema": {
                                       "type": "object", "required": ["webhook", "data"]}}}}}),
    "webhooks.redeliver": _meta("Send the job's latest subscribed event to its webhook again", errors=(401, 404, 409, 503),
                                responses={202: {"content": {"application/json": {"schema": {
                                    "type": "object", "required": ["message_id", "event"]}}}}}),
    "demo.page": _meta("The demo page (GENLINE_DEMO=1)", responses={200: {"content": {"text/html": {}}}},
                       errors=(404,), auth=PUBLIC),
    "demo.create": _meta("Submit from the demo page, limited per client IP (GENLINE_DEMO_RATE_LIMIT)",
                         body=JobCreate, responses={202: {"content": {"application/json": {"schema": {"type": "object"}}}}},
                         errors=(400, 404, 413, 415, 422, 429), auth=PUBLIC),
    "demo.cancel": _meta("Cancel a demo job with its token", params=[TOKEN],
                         responses={202: {"content": {"application/json": {"schema": {"type": "object"}}}}},
                         errors=(401, 404, 409), auth=PUBLIC),
    "health.healthz": _meta("Liveness", responses={200: out.Health}, auth=PUBLIC),
    "health.readyz": _meta("Readiness of database, broker and storage", responses={200: out.Ready, 503: out.Ready},
                           auth=PUBLIC),
}

_RULE_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def _schema_of(model: type[BaseModel], components: dict, mode: str) -> dict:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _response(spec, components: dict) -> dict:
    if isinstance(spec, dict) and "model" in spec:
        return {**_response(spec["model"], components), "headers": spec["headers"]}
    if isinstance(spec, type) and issubclass(spec, BaseModel):
        return {"description": (spec.__doc__ or spec.__name__).strip().splitlines()[0],
                "content": {"application/json": {"schema": _schema_of(spec, components, "serialization")}}}
    return {"description": "", **(spec or {})}


def _query_params(model: type[BaseModel]) -> list:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    return [{"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema["properties"].items()]


def _operation(rule, view, components: dict) -> dict:
    meta = getattr(view, "openapi", None) or OPERATIONS.get(rule.endpoint)
    if meta is None:
        doc = (view.__doc__ or rule.endpoint).strip().splitlines()[0]
        meta = _meta(doc, responses={"2XX": None})
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in _RULE_ARG.findall(rule.rule)]
    params += list(meta["params"])
    if meta["query"]:
        params += _query_params(meta["query"])
    op = {"operationId": rule.endpoint.replace(".", "_"), "summary": meta["summary"], "parameters": params,
          "responses": {str(code): _response(spec, components) for code, spec in meta["responses"].items()}}
    if view.__doc__ and view.__doc__.strip() != meta["summary"]:
        op["description"] = view.__doc__.strip()
    if isinstance(meta["body"], dict):
        op["requestBody"] = {"required": True, "content": meta["body"]}
    elif meta["body"]:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _schema_of(meta["body"], components, "validation")}}}
    error = {"description": "the one error shape",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for code in meta["errors"]:
        op["responses"].setdefault(str(code), {**error, **({"headers": ERROR_HEADERS[code]} if code in ERROR_HEADERS else {})})
    op["responses"]["default"] = error
    if meta["auth"] == PUBLIC:
        op["security"] = []
    return op


def document(app) -> dict:
    """The OpenAPI 3.1 document of every route of ``app``."""
    components: dict = {}
    _schema_of(out.Error, components, "serialization")
    paths: dict = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint.split(".")[-1] == "static":
            continue
        view = app.view_functions[rule.endpoint]
        path = _RULE_ARG.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(rule, view, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "genline", "version": "1",
                 "description": "A job service for slow AI image generation. POST /v1/jobs answers 202 at once; "
                                "`Prefer: wait=N` on it, or `GET /v1/jobs/{id}?wait=N`, holds the answer until the "
                                "job ends (N ≤ 60). Errors always have the shape "
                                "{\"error\": {\"code\", \"message\", \"fields\"}}."},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                                      "description": "an API key from `genline keys create`"}}},
        "security": [{"apiKey": []}],
    }


@bp.get("/openapi.json")
@describe("This OpenAPI document", responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
          auth=PUBLIC)
def openapi_json():
    return jsonify(document(current_app))


@bp.get("/docs")
@describe("A page that renders the OpenAPI document", responses={200: {"content": {"text/html": {}}}}, auth=PUBLIC)
def docs():
    response = Response((DOCS_DIR / "index.html").read_text(), mimetype="text/html")
    # Swagger UI sets inline styles and draws some icons as data: images; no inline script, no other origin.
    response.headers["Content-Security-Policy"] = ("default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                                   "img-src 'self' data:")
    return response
