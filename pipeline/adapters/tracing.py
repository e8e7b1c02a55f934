"""OpenTelemetry traces of a job: the submit request, each step, the provider call,
the storage write and the webhook delivery, in one trace (docs/tracing.md).

Optional: it needs the ``genline[otel]`` extra and is off unless the standard
``OTEL_*`` variables ask for it (``OTEL_TRACES_EXPORTER`` other than ``none``,
or an ``OTEL_EXPORTER_OTLP_ENDPOINT``); ``OTEL_SDK_DISABLED=true`` wins. The
trace crosses every Celery message in its headers (the Celery instrumentation
injects the context when a message is published inside a span and extracts it
when the task runs), and each step sends the next from inside its own span, so
a job's steps, retries and failovers form one trace. Everything here is a no-op
while tracing is off; opentelemetry is imported only once it is on.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from importlib.metadata import entry_points
from pathlib import Path

from celery import signals

log = logging.getLogger("genline.tracing")

JSONL = "genline_jsonl"
"""Exporter name (``OTEL_TRACES_EXPORTER``) of spans written as JSON lines, one file per process
(under ``GENLINE_OTEL_JSONL_DIR``): for tests and for looking at traces without a collector."""
JSONL_DIR = "GENLINE_OTEL_JSONL_DIR"

_state: dict = {"on": False, "pid": None}
_lock = threading.Lock()


def configured(env=None) -> bool:
    """Whether the OTEL_* variables in ``env`` (default: the process's) turn tracing on."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def enabled() -> bool:
    return _state["on"]


def setup(app=None) -> bool:
    """Turn tracing on in this process if configured; instrument ``app`` (a Flask app) too.

    Installs the tracer provider and the Celery and requests instrumentations
    once per process. False (and a warning) when configured but the extra is missing.
    """
    if not configured():
        return False
    with _lock:
        if not _state["on"]:
            try:
                _install()
            except ImportError as exc:
                log.warning("tracing is configured but not installed (pip install 'genline[otel]'): %s", exc)
                return False
            _state["on"] = True
    if app is not None and not app.extensions.get("genline.tracing"):
        from opentelemetry.instrumentation.flask import FlaskInstrumentor  # lazy: optional genline[otel]
        FlaskInstrumentor().instrument_app(app, excluded_urls="healthz,readyz,metrics")
        app.extensions["genline.tracing"] = True
        celery = app.extensions.get("celery")
        if celery is not None:
            # The Celery instrumentation looks a published task up by name in the app's
            # registry: a web process sends the step tasks by name without importing them.
            celery.loader.import_default_modules()
    return True


def _install() -> None:
    # lazy: optional genline[otel] (an ImportError here: tracing configured, extra missing)
    from opentelemetry import trace
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    attributes = {}
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if not named:
        attributes["service.name"] = "genline"
    provider = TracerProvider(resource=Resource.create(attributes))  # sampler: OTEL_TRACES_SAMPLER
    for name in [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]:
        provider.add_span_processor(_processor(name))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument()
    RequestsInstrumentor().instrument()

    def flush(**_):
        provider.force_flush(5000)
    # A prefork pool child does not run atexit handlers: flush its batch as it stops.
    signals.worker_process_shutdown.connect(flush, weak=False)
    signals.worker_shutdown.connect(flush, weak=False)


def _processor(name: str):
    # lazy: optional genline[otel]
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    if name == JSONL:
        return SimpleSpanProcessor(_jsonl_exporter(Path(os.environ.get(JSONL_DIR) or "var/traces")))
    if name == "console":
        return SimpleSpanProcessor(ConsoleSpanExporter())
    return BatchSpanProcessor(_exporter(name))  # queue and batch sizes: OTEL_BSP_*


def _exporter(name: str):
    """The span exporter registered under ``name`` (the SDK's entry point group), e.g. ``otlp``."""
    if name == "otlp":
        protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
        name = "otlp_proto_grpc" if protocol == "grpc" else "otlp_proto_http"
    found = list(entry_points(group="opentelemetry_traces_exporter", name=name))
    if not found:
        raise ImportError(f"no span exporter named {name!r} is installed (OTEL_TRACES_EXPORTER)")
    return found[0].load()()


def _jsonl_exporter(directory: Path):
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult  # lazy: optional genline[otel]

    class JsonLinesSpanExporter(SpanExporter):
        """Each finished span as one JSON line in ``<directory>/spans-<pid>.jsonl``."""

        def export(self, spans):
            directory.mkdir(parents=True, exist_ok=True)
            lines = "".join(json.dumps(json.loads(span.to_json()), separators=(",", ":")) + "\n" for span in spans)
            with open(directory / f"spans-{os.getpid()}.jsonl", "a", encoding="utf-8") as out:
                out.write(lines)
            return SpanExportResult.SUCCESS

    return JsonLinesSpanExporter()


def span(name: str, **attributes):
    """A span around a block (a no-op while tracing is off); ``attributes`` with None values are left out."""
    if not _state["on"]:
        return contextlib.nullcontext()
    from opentelemetry import trace  # lazy: optional genline[otel]
    return trace.get_tracer("genline").start_as_current_span(name, attributes=_clean(attributes))


@contextlib.contextmanager
def detached():
    """Run a block outside the current trace: messages it sends for *other* jobs start traces of their own."""
    if not _state["on"]:
        yield
        return
    from opentelemetry import context  # lazy: optional genline[otel]
    token = context.attach(context.Context())
    try:
        yield
    finally:
        context.detach(token)


def annotate(**attributes) -> None:
    """Set attributes on the current span (the step's, the request's), as ``genline.<name>``."""
    if not _state["on"]:
        return
    from opentelemetry import trace  # lazy: optional genline[otel]
    trace.get_current_span().set_attributes(_clean(attributes))


def failed(code: str, message: str) -> None:
    """Mark the current span as failed with a job error code."""
    if not _state["on"]:
        return
    # lazy: optional genline[otel]
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode
    current = trace.get_current_span()
    current.set_attribute("genline.error_code", code)
    current.set_status(Status(StatusCode.ERROR, f"{code}: {message}"))


def _clean(attributes: dict) -> dict:
    return {(k if "." in k else f"genline.{k}"): v for k, v in attributes.items() if v is not None}
