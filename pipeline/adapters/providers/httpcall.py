"""HTTP calls of remote providers: time-boxed, cancelable, failures mapped onto error codes.

The request, from connect to its last byte, runs in a helper while the
attempt polls ``ctx.check()`` every ``POLL_S``; a canceled job or an attempt out
of time stops waiting at once. On the I/O worker (``-P gevent``) the helper is a
greenlet and is killed there and then: ``GreenletExit`` is raised at its socket
wait, urllib3 drops the connection, and the provider sees it closed. On a
prefork worker it is a thread, abandoned to end at its own read timeout (the
attempt's remaining time), since a thread cannot be interrupted; the pool
process's hard time limit bounds it. HTTP answers are mapped the same way for every
provider: 400 → invalid_input (or unsafe_content for a safety refusal),
413/415/422 → invalid_input, 401/403/404/405 → provider_error that moves on to
the next provider (credentials or URL need fixing), 429 →
rate_limited with Retry-After, 5xx → provider_error; connection failures →
network_error, read timeouts → timeout.
"""
from __future__ import annotations

import base64
import binascii
import contextvars
import email.utils
import io
import threading
import time

import gevent
import requests
from gevent import monkey
from PIL import Image

from pipeline.adapters.providers.base import AttemptContext
from pipeline.core import media
from pipeline.core.errors import (
    GenlineError,
    InvalidInput,
    NetworkError,
    ProviderError,
    RateLimited,
    Timeout,
    UnsafeContent,
)

CONNECT_TIMEOUT_S = 10.0
POLL_S = 0.1
MAX_ANSWER_BYTES = 200 * 1024 * 1024
"""A provider answer larger than this is refused (it would not fit a job's outputs anyway)."""


class ProviderUnusable(ProviderError):
    """The provider refused our credentials or is not configured: retrying it cannot help.

    Still ``provider_error`` (retryable, so a provider list fails over to the next
    one), but its own remaining attempts are skipped.
    """

    exhausts_provider = True


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _detail(response: requests.Response) -> tuple[str, str, str]:
    """(message, code, type) from an error body: OpenAI's {"error": {...}} shape or plain text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason or "", "", ""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or ""), str(err.get("code") or ""), str(err.get("type") or "")
    if isinstance(err, str):
        return err, "", ""
    return str(body)[:300], "", ""


SAFETY_MARKERS = ("content_policy", "moderation", "safety", "unsafe")


def error_from_response(name: str, response: requests.Response) -> GenlineError:
    """The genline error of a non-2xx provider answer."""
    status = response.status_code
    message, code, kind = _detail(response)
    said = f"{name} answered {status}" + (f": {message}" if message else "")
    if status == 400:
        if any(m in f"{code} {kind}".lower() for m in SAFETY_MARKERS):
            return UnsafeContent(said)
        return InvalidInput(said)
    if status in (401, 403):
        return ProviderUnusable(f"{said} (check the provider's credentials)")
    if status == 429:
        return RateLimited(said, retry_after=_retry_after(response.headers.get("Retry-After")))
    if status in (404, 405):
        # The provider has no such endpoint: its URL is misconfigured, not the request wrong.
        return ProviderUnusable(f"{said} (check the provider's URL)")
    if status in (413, 415, 422):
        return InvalidInput(said)
    return ProviderError(said)


def read_capped(response: requests.Response, limit: int) -> bytes | None:
    """A streamed response's body, or None as soon as it is known to exceed ``limit`` bytes."""
    if int(response.headers.get("Content-Length") or 0) > limit:
        return None
    body = bytearray()
    for chunk in response.iter_content(64 * 1024):
        body.extend(chunk)
        if len(body) > limit:
            return None
    return bytes(body)


def _send(session: requests.Session, method: str, url: str, timeout: float, kwargs: dict, out: dict) -> None:
    try:
        response = session.request(method, url, timeout=(min(CONNECT_TIMEOUT_S, timeout), timeout),
                                   stream=True, **kwargs)
        body = read_capped(response, MAX_ANSWER_BYTES)
        if body is None:
            raise ProviderError(f"the answer is more than {MAX_ANSWER_BYTES} bytes")
        response._content = body
        out["response"] = response
    except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
        out["error"] = exc
    finally:
        session.close()


def _mapped(name: str, exc: BaseException) -> BaseException:
    if isinstance(exc, GenlineError):
        return exc
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return NetworkError(f"could not connect to {name} in time ({exc.__class__.__name__})")
    if isinstance(exc, (requests.exceptions.ReadTimeout, requests.exceptions.Timeout)):
        return Timeout(f"{name} did not answer within the attempt's time")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return NetworkError(f"could not reach {name} ({exc.__class__.__name__})")
    if isinstance(exc, requests.exceptions.RequestException):
        return NetworkError(f"the request to {name} failed ({exc.__class__.__name__}: {exc})")
    return exc


def _gevent() -> bool:
    """True in a process monkey-patched by gevent (the I/O worker, gunicorn's gevent workers)."""
    return monkey.is_module_patched("socket")


def call(name: str, method: str, url: str, ctx: AttemptContext, **kwargs) -> requests.Response:
    """Send one request within the attempt's time; a 2xx response or a mapped ``GenlineError``.

    ``ctx.check()`` runs every ``POLL_S`` while the request is in flight, so a
    cancel or the attempt's end is noticed within a fraction of a second; on
    gevent the request is then aborted, its connection closed.
    """
    ctx.check()
    out: dict = {}
    session = requests.Session()
    # The request runs in the caller's context (its trace span) although in another thread or greenlet.
    args = (_send, session, method, url, max(0.1, ctx.remaining_s()), kwargs, out)
    run = contextvars.copy_context().run
    if _gevent():
        helper = gevent.spawn(run, *args)
        try:
            while not helper.ready():
                helper.join(POLL_S)
                if not helper.ready():
                    ctx.check()  # raises Canceled or Timeout
        finally:
            # Also on gevent.Timeout (the pool's hard limit) and GreenletExit (the task's greenlet killed).
            if not helper.ready():
                helper.kill(block=True, timeout=1.0)
    else:
        thread = threading.Thread(target=run, args=args, name=f"{name}-request", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(POLL_S)
            if thread.is_alive():
                ctx.check()  # raises Canceled or Timeout: we stop waiting; the thread is abandoned
    if "error" in out:
        raise _mapped(name, out["error"]) from None
    response = out["response"]
    if not 200 <= response.status_code < 300:
        raise error_from_response(name, response)
    return response


def b64_image(value, what: str) -> bytes:
    """Decode one base64 image of a JSON answer (a data: URI prefix is accepted)."""
    if not isinstance(value, str) or not value:
        raise ProviderError(f"{what} is not a base64 string")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProviderError(f"{what} is not valid base64") from None


def checked_image(name: str, data: bytes, what: str) -> tuple[bytes, str]:
    """(bytes, media type) of an image a provider returned; ``ProviderError`` if it is not one."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format
            image.verify()
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for corrupt data
        raise ProviderError(f"{name} returned {what} that is not a readable image ({exc.__class__.__name__})") from None
    if fmt not in media.BY_PIL:
        raise ProviderError(f"{name} returned {what} as {fmt}; genline takes PNG, JPEG or WebP")
    return data, media.BY_PIL[fmt]
