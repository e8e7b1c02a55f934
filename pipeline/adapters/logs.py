"""Log lines on stderr: key=value text (the default) or one JSON object per line.

``GENLINE_LOG_FORMAT=json`` switches every process (web, worker, beat) to JSON:
genline's own lines, Celery's, gunicorn's and Python's warnings. Each object has
``ts``, ``level``, ``logger``, ``message`` and always ``job_id``, ``step``,
``attempt``, ``status`` and ``trace_id`` (null where not known). They are taken,
in this order, from the OpenTelemetry span of the moment (``trace_id``), the job a
step task is running (``job_context``), and the message's own ``key=value`` pairs,
which genline's lines all carry (so a line about another job names that job).
"""
from __future__ import annotations

import contextvars
import json
import logging
import math
import re
from collections.abc import Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

TEXT_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
FIELDS = ("job_id", "step", "attempt", "status", "trace_id")
"""Keys every JSON line carries (null when not known)."""
RESERVED = ("ts", "level", "logger", "message", "pid", "exception", "stack")
"""Keys a message's own ``key=value`` pairs cannot replace."""

# Never mutated, only replaced: the default is read-only so no caller can change it for all.
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("genline_log_context",
                                                                          default=MappingProxyType({}))
_PAIR = re.compile(r"(?<![\w.])([a-z_][a-z0-9_]*)=(\"[^\"]*\"|'[^']*'|[^\s,]+)")


def bind(**fields) -> None:
    """Lines logged from now on in this task name this job (``clear`` ends it; Celery's task signals call it)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def clear() -> None:
    _context.set({})


@contextmanager
def job_context(**fields):
    """Lines logged inside name this job (``job_id``, ``step``, ``attempt``, ``status``)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def _number(value: str):
    for kind in (int, float):
        try:
            number = kind(value)
        except ValueError:
            continue
        return number if math.isfinite(number) else value  # JSON has no NaN or Infinity
    return value


def message_fields(message: str) -> dict:
    """The ``key=value`` pairs of a line (numbers as numbers, ``None`` as null)."""
    found = {}
    for key, raw in _PAIR.findall(message):
        value = raw[1:-1] if raw[:1] in "\"'" else raw
        found[key] = None if value == "None" else _number(value)
    return found


_otel_trace: Any = None  # the opentelemetry.trace module, False when not installed
"""``opentelemetry.trace`` once imported, False when it is not installed (looked up once)."""


def trace_id() -> str | None:
    """The current OpenTelemetry trace id (32 hex digits), when the API is installed and a span is recording."""
    global _otel_trace
    if _otel_trace is None:
        try:
            from opentelemetry import trace  # lazy: optional genline[otel]
            _otel_trace = trace
        except ImportError:
            _otel_trace = False
    if not _otel_trace:
        return None
    context = _otel_trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            **{name: None for name in FIELDS},
            "pid": record.process,
        }
        line["trace_id"] = trace_id()
        line.update(_context.get())
        if record.name.startswith("genline"):  # genline's lines are key=value by convention; others may not be
            line.update({k: v for k, v in message_fields(message).items() if k not in RESERVED})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, separators=(",", ":"))


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def configure(fmt: str = "text", level: str = "INFO") -> None:
    """genline's logger on stderr at ``level`` (``GENLINE_LOG_LEVEL``), in ``fmt`` (``GENLINE_LOG_FORMAT``).

    In JSON mode the root logger gets a JSON handler too when nothing set one up
    (a gunicorn worker, a script), and Python warnings go through logging, so no
    plain-text line reaches stderr. Celery sets up its own handlers and
    ``reformat`` then switches them (``pipeline.worker.observe``).
    """
    root = logging.getLogger("genline")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter(fmt))
        root.addHandler(handler)
        root.setLevel(level)
        root.propagate = False
    if fmt == "json":
        logging.captureWarnings(True)
        top = logging.getLogger()
        if not top.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(JsonFormatter())
            top.addHandler(handler)


def reformat(logger: logging.Logger, fmt: str) -> None:
    """Switch every handler of ``logger`` to ``fmt`` (JSON, or left as is for text)."""
    if fmt != "json":
        return
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())


def gunicorn_config() -> dict:
    """gunicorn's ``logconfig_dict`` for JSON lines: errors on stderr, access lines on stdout."""
    handler = {"class": "logging.StreamHandler", "formatter": "json"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "pipeline.adapters.logs.JsonFormatter"}},
        "handlers": {"stderr": {**handler, "stream": "ext://sys.stderr"},
                     "stdout": {**handler, "stream": "ext://sys.stdout"}},
        "root": {"level": "WARNING", "handlers": ["stderr"]},  # as without a handler: libraries' warnings only
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
    }
