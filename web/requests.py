"""Reading request bodies and queries strictly: clear 400/415/422 answers, never a 500."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from flask import request
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


def wait_seconds(max_wait: float = 60.0) -> float:
    """``?wait=N`` or ``Prefer: wait=N`` (at most 60), 0 when absent."""
    raw = request.args.get("wait")
    if raw is None:
        for part in request.headers.get("Prefer", "").split(","):
            name, _, value = part.strip().partition("=")
            if name.strip().lower() == "wait":
                raw = value.strip()
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        raise ApiError(422, "invalid_input", "wait: must be a number of seconds", {"wait": "must be a number"}) from None
    if not 0 <= seconds <= max_wait:
        raise ApiError(422, "invalid_input", f"wait: must be between 0 and {max_wait:g} seconds", {"wait": f"0..{max_wait:g}"})
    return seconds
