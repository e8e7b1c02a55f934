"""Reading request bodies and queries strictly: clear 400/415/422 answers, never a 500."""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone

from flask import current_app, g, request
from pydantic import BaseModel, ValidationError
from werkzeug.http import parse_dict_header, parse_list_header

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


def _reject_constant(name: str):
    raise ApiError(422, "invalid_input", f"the body holds {name}, which is not a JSON number; send a finite number",
                   {"body": f"{name} is not allowed"})


def bad_text(value: str) -> str | None:
    """Why a string cannot be stored (Postgres text refuses NUL; UTF-8 refuses lone surrogates), or None."""
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain lone surrogates (\\ud800-\\udfff)"
    return None


def check_text(value, path: str = "body") -> None:
    """422 naming the field when any string (or object key) in ``value`` cannot be stored as text."""
    if isinstance(value, str):
        problem = bad_text(value)
        if problem:
            raise ApiError(422, "invalid_input", f"{path}: {problem}", {path: problem})
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, path)
            check_text(item, f"{key}" if path == "body" else f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_text(item, f"{path}[{i}]")


def _read_body() -> bytes:
    """The body, refusing one over the limit with 413, chunked (no Content-Length) ones too.

    Werkzeug cuts a chunked body at MAX_CONTENT_LENGTH and returns the part it
    read; reading one byte more than the limit tells a long body from one that fits.
    """
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit and request.content_length is None:
        request.max_content_length = limit + 1
    raw = request.get_data(cache=True)
    if limit and len(raw) > limit:
        raise ApiError(413, "payload_too_large",
                       f"the request body is larger than the {limit} bytes allowed (GENLINE_MAX_BODY_BYTES)")
    return raw


def json_body(schema: type[BaseModel], *, optional: bool = False):
    """Parse the body as JSON into ``schema``, or raise the matching ApiError."""
    raw = _read_body()
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
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_input", "the body must be a JSON object", {"body": "must be an object"})
    if _depth(data) > MAX_JSON_DEPTH:
        raise ApiError(422, "invalid_input", f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    check_text(data)
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
        for item in items:
            check_text(item, key)
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
        # In UTC now: an offset at the edge of the calendar (0001-01-01T00:00-23:59)
        # overflows here, as a clear 422, rather than in the database driver.
        return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        raise ApiError(422, "invalid_input", f"{name}: must be an ISO 8601 time like 2026-01-31T12:00:00Z",
                       {name: "must be an ISO 8601 time"}) from None


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
