"""Reading request bodies and queries strictly: clear 400/415/422 answers, never a 500."""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone

from flask import g, request
from werkzeug.http import parse_dict_header, parse_list_header
from pydantic import BaseModel, ValidationError

from web.api.errors import ApiError, validation_error

MAX_JSON_DEPTH = 32


def _depth(value, level=0) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def json_body(schema: type[BaseModel], *, optional: bool = False):
    """Parse the body as JSON into ``schema``, or raise the matching ApiError."""
    raw = request.get_data(cache=True)
    if not raw and optional:
        return schema(), {}
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", "send the body as JSON with 'Content-Type: application/json'")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "the body is not valid UTF-8") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_input", "the body must be a JSON object", {"body": "must be an object"})
    if _depth(data) > MAX_JSON_DEPTH:
        raise ApiError(422, "invalid_input", f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return schema.model_validate(data), data
    except ValidationError as exc:
        raise validation_error(exc) from None


def query(schema: type[BaseModel]):
    """Parse the query string into ``schema`` (numbers given as text are converted)."""
    values = {}
    for key in request.args:
        if key == "token":
            continue
        items = request.args.getlist(key)
        values[key] = items[0] if len(items) == 1 else items
    fields = schema.model_fields
    for key, value in list(values.items()):
        if key in fields and fields[key].annotation is int and isinstance(value, str):
            try:
                values[key] = int(value)
            except ValueError:
                raise ApiError(422, "invalid_input", f"{key}: must be a whole number", {key: "must be a whole number"}) from None
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        raise validation_error(exc) from None


def parse_time(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 timestamp (naive means UTC), or 422 naming the parameter."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(422, "invalid_input", f"{name}: must be an ISO 8601 time like 2026-01-31T12:00:00Z",
                       {name: "must be an ISO 8601 time"}) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def preferences() -> dict[str, str]:
    """The request's ``Prefer`` preferences (RFC 7240) as {name: value}; the first of a name wins.

    Values may be quoted (``wait="5"``); parameters after ``;`` are ignored.
    """
    found: dict[str, str] = {}
    for header in request.headers.getlist("Prefer"):
        for item in parse_list_header(header):
            head = item.split(";", 1)[0].strip()
            for name, value in parse_dict_header(head).items():
                found.setdefault(name.strip().lower(), (value or "").strip())
    return found


def wait_seconds(max_wait: float = 60.0) -> float:
    """``?wait=N`` (0..60, else 422) or ``Prefer: wait=N`` (a hint: capped at 60, ignored if not a number).

    A honoured ``Prefer: wait`` is noted for ``Preference-Applied`` (see ``preference_applied``).
    """
    raw = request.args.get("wait")
    if raw is None:
        return _preferred_wait(max_wait)
    try:
        seconds = float(raw)
    except ValueError:
        raise ApiError(422, "invalid_input", "wait: must be a number of seconds", {"wait": "must be a number"}) from None
    if not 0 <= seconds <= max_wait:
        raise ApiError(422, "invalid_input", f"wait: must be between 0 and {max_wait:g} seconds", {"wait": f"0..{max_wait:g}"})
    return seconds


def _preferred_wait(max_wait: float) -> float:
    raw = preferences().get("wait")
    try:
        seconds = float(raw) if raw is not None else math.nan
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        return 0.0  # a preference the server cannot honour is ignored, never an error (RFC 7240 §2)
    seconds = min(seconds, max_wait)
    g.genline_preference_applied = f"wait={seconds:g}"
    return seconds


def preference_applied(response):
    """Add ``Preference-Applied`` naming the wait that was honoured, if any."""
    applied = g.get("genline_preference_applied")
    if applied:
        response.headers["Preference-Applied"] = applied
        response.vary.add("Prefer")
    return response
