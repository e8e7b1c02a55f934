"""What the sync and async clients share and that does no I/O: retry arithmetic,
error mapping, request bodies, job references and an SSE line decoder."""
from __future__ import annotations

import email.utils
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any, Optional, Union
from urllib.parse import quote

import httpx

from genline_client.errors import ApiError, RateLimited
from genline_client.models import Budget, Job

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
USER_AGENT = "genline-client-python/0.1.0"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Errors before the request reached the server: always safe to send again."""
LONG_POLL_S = 20
"""The most one long-poll holds (the server allows 60); the wait loop checks in between."""
FIRST_LONG_POLL_S = 5
"""The long-poll after a first cut is short (progress pauses while it holds); it grows while cuts go on."""
STREAM_READ_TIMEOUT_S = 45.0
"""Silence on an event stream longer than this (three server heartbeats) means it is dead."""

JobRef = Union[str, Job, dict]


def backoff_s(attempt: int, base_s: float = 0.5, cap_s: float = 8.0, rng=random.random) -> float:
    """Delay before retry ``attempt`` (0-based): base * 2^attempt, capped, equal jitter (uniform in its upper half)."""
    ceiling = min(cap_s, base_s * 2 ** attempt)
    return ceiling / 2 + ceiling / 2 * rng()


def retry_after_s(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """``Retry-After`` as seconds: a number, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_response(response: httpx.Response) -> ApiError:
    """The typed error of a non-2xx answer, from genline's ``{"error": {...}}`` when present."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}
    status = response.status_code
    code = error.get("code") or ("rate_limited" if status == 429 else "http_error")
    message = error.get("message") or f"genline answered HTTP {status}"
    headers = dict(response.headers)
    if status == 429:
        return RateLimited(status, code, message, error.get("fields"), headers,
                           retry_after_s(response.headers.get("Retry-After")))
    return ApiError(status, code, message, error.get("fields"), headers)


def new_idempotency_key() -> str:
    return f"genline-py-{uuid.uuid4()}"


def create_body(prompt: str, *, operation: Optional[str] = None, provider: Any = None, model: Optional[str] = None,
                params: Optional[dict] = None, size: Optional[str] = None, n: Optional[int] = None,
                seed: Optional[int] = None, format: Optional[str] = None, inputs: Optional[dict] = None,
                images: Optional[list] = None, mask: Optional[str] = None,
                budget: Union[Budget, dict, None] = None, priority: Optional[str] = None,
                metadata: Optional[dict] = None, webhook: Optional[dict] = None) -> dict:
    """The JSON of POST /v1/jobs; only what was given is sent, so the server's defaults apply."""
    body: dict = {"prompt": prompt}
    merged = dict(params or {})
    for name, value in (("size", size), ("n", n), ("seed", seed), ("format", format)):
        if value is not None:
            merged[name] = value
    if merged:
        body["params"] = merged
    merged_inputs = dict(inputs or {})
    if images is not None:
        merged_inputs["images"] = list(images)
    if mask is not None:
        merged_inputs["mask"] = mask
    if merged_inputs:
        body["inputs"] = merged_inputs
    if isinstance(budget, Budget):
        budget = budget.to_dict()
    for name, value in (("operation", operation), ("provider", provider), ("model", model), ("budget", budget),
                        ("priority", priority), ("metadata", metadata), ("webhook", webhook)):
        if value is not None:
            body[name] = value
    return body


@dataclass
class Target:
    """Where to read, follow and cancel one job: by id with the API key, or by its token URLs."""

    job_id: str
    self_url: str
    events_url: str
    cancel_url: str


def target(base_url: str, ref: JobRef, have_key: bool) -> Target:
    """URLs for a job id or a job (a ``Job`` or its dict). Without an API key the job's token URLs are used."""
    if isinstance(ref, str):
        job_id, urls = ref, {}
    elif isinstance(ref, Job):
        job_id, urls = ref.id, {"self": ref.urls.self, "events": ref.urls.events, "cancel": ref.urls.cancel}
    else:
        job_id, urls = ref["id"], ref.get("urls") or {}
    base = f"{base_url.rstrip('/')}/v1/jobs/{quote(job_id, safe='')}"
    if have_key or not urls.get("self"):
        return Target(job_id, base, f"{base}/events", f"{base}/cancel")
    return Target(job_id, urls["self"], urls.get("events") or f"{base}/events", urls.get("cancel") or f"{base}/cancel")


class SSEDecoder:
    """Turns the lines of a text/event-stream into ``{"id", "event", "data"}`` messages (WHATWG rules)."""

    def __init__(self):
        self._reset()

    def _reset(self):
        self.event, self.id, self.data = "message", None, []

    def feed(self, line: str) -> Optional[dict]:
        """One line (without its newline); a message when the line completes one."""
        if line == "":
            if not self.data:
                self._reset()
                return None
            message = {"id": self.id, "event": self.event, "data": "\n".join(self.data)}
            self._reset()
            return message
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self.data.append(value)
        elif name == "event":
            self.event = value
        elif name == "id":
            self.id = value
        return None
