"""Rate limits (Flask-Limiter), counted in Redis so they hold across web processes.

Submissions (POST /v1/jobs) are limited per API key: the key's own
``rate_limit`` (``genline keys create --rate-limit``), else its tenant's, else
``GENLINE_RATE_LIMIT``. Requests without a key are counted per client IP. The
Redis counters are named by a hash of the key, never by the key itself.
A breach answers 429 in the one error shape with ``Retry-After`` and the
``X-RateLimit-*`` headers. ``Retry-After`` appears only on the answers it
means something on (429, and a 503 that set its own): on a 202 it would read as
"poll again in a minute". An idempotent replay of a job that already exists is
not counted: a client retrying after a timeout needs its job back most exactly
when it is being limited.
"""
from __future__ import annotations

import hashlib

from flask import current_app, g, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_remote_address


def _config():
    return current_app.extensions["genline.config"]


def _bearer() -> str | None:
    from web.auth import bearer_key
    return bearer_key()


def caller_key() -> str:
    """Who a submission counts against: ``key:<sha256 prefix>`` or ``ip:<address>``."""
    key = _bearer()
    if key:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]
    return "ip:" + (get_remote_address() or "unknown")


def submission_rate() -> str:
    """The limit of the calling key: its own, its tenant's, or GENLINE_RATE_LIMIT."""
    cached = g.get("genline_rate")
    if cached:
        return cached
    cfg = _config()
    rate = cfg.rate_limit
    key = _bearer()
    if key and key not in cfg.api_keys:
        from web.auth import made_key
        # The same read authenticates the request afterwards (one query).
        row = made_key(key)
        if row is not None:
            rate = row.key_rate_limit or row.tenant_rate_limit or rate
    g.genline_rate = rate
    return rate


def _message() -> str:
    return (f"too many submissions: the limit is {g.get('genline_rate') or _config().rate_limit} per API key "
            "(GENLINE_RATE_LIMIT or the key's own rate limit); retry after the time in Retry-After")


def submissions(view):
    """Mark a submission route: limited per API key (see the module docstring)."""
    view.genline_limit = "submission"
    return view


def per_ip(view):
    """Mark an unauthenticated route (the demo's submissions): limited per client IP."""
    view.genline_limit = "ip"
    return view


def _ip_key() -> str:
    return "ip:" + (get_remote_address() or "unknown")


def _ip_message() -> str:
    return f"too many requests from this address: the limit is {_config().demo_rate_limit} (GENLINE_DEMO_RATE_LIMIT)"


RETRY_AFTER_STATUSES = (429, 503)


def _is_replay() -> bool:
    """True when this submission names an Idempotency-Key of an existing job of the caller's tenant."""
    idem = request.headers.get("Idempotency-Key")
    key = _bearer()
    from web.requests import bad_text
    if not idem or not key or len(idem) > 255 or bad_text(idem):
        return False  # not a key the store can hold: the submission answers 422 itself
    from pipeline.store import jobs
    from web.auth import tenant_for_key
    tenant = tenant_for_key(key)
    return tenant is not None and jobs.find_idempotent(tenant, idem) is not None


def _retry_after_only_where_meant(response):
    """Drop Flask-Limiter's Retry-After from answers that are not 429/503; keep a 503's own value."""
    own = g.get("genline_retry_after")
    if response.status_code not in RETRY_AFTER_STATUSES:
        response.headers.pop("Retry-After", None)
    elif response.status_code == 503 and own:
        response.headers["Retry-After"] = own
    return response


def init_app(app) -> None:
    """Give ``app`` its own limiter on its Redis (tests run several apps in one process)."""
    cfg = app.extensions["genline.config"]
    # Registered before the limiter's own after_request, so it runs after it (Flask runs them in reverse).
    app.after_request(_retry_after_only_where_meant)
    limiter = Limiter(key_func=caller_key, headers_enabled=True, key_prefix="genline",
                      storage_uri=cfg.redis_url, strategy="moving-window", swallow_errors=True,
                      storage_options={"socket_connect_timeout": 2, "socket_timeout": 2})
    limiter.init_app(app)
    app.extensions["genline.limiter"] = limiter
    by_submission = limiter.limit(submission_rate, key_func=caller_key, error_message=_message)
    by_ip = limiter.limit(lambda: _config().demo_rate_limit, key_func=_ip_key, error_message=_ip_message)

    @app.before_request
    def _check_marked_route():
        kind = getattr(app.view_functions.get(request.endpoint), "genline_limit", None)
        if kind == "submission" and not _is_replay():
            with by_submission:
                pass
        elif kind == "ip":
            with by_ip:
                pass

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded):
        # Flask-Limiter's after_request adds Retry-After and X-RateLimit-* to this response.
        from web.api.errors import error_response
        return error_response(429, "rate_limited", exc.description)
