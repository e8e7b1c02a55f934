"""Rate limits: Flask-Limiter's decorators, counted in Redis so they hold across web processes.

Submissions (``@limits.submissions``, POST /v1/jobs) share one limit per API
key: the key's own ``rate_limit`` (``genline keys create --rate-limit``), else
its tenant's, else ``GENLINE_RATE_LIMIT``. Requests without a key are counted
per client IP. The Redis counters are named by a hash of the key, never by the
key itself. The demo's submissions (``@limits.per_ip``) share one limit per
client IP (``GENLINE_DEMO_RATE_LIMIT``).
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
from limits.storage import MovingWindowSupport, RedisStorage, Storage

from pipeline.adapters import redisurl

STORAGE = "genline.rate_limit_storage"
"""``app.extensions`` key of the app's own Redis storage for the counters."""


class EachAppsRedis(Storage, MovingWindowSupport):
    """A ``limits`` storage that counts in the Redis of the app serving the request.

    One ``Limiter`` is declared at import so views carry its decorators, but a
    process may hold several apps on different Redis servers (the tests do);
    this storage (``genline-app://``) hands each call to the current app's own.
    """

    STORAGE_SCHEME = ["genline-app"]

    @staticmethod
    def _own() -> RedisStorage:
        return current_app.extensions[STORAGE]

    @property
    def base_exceptions(self):  # noqa: ANN201 - limits' own signature
        return self._own().base_exceptions

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._own().incr(key, expiry, amount=amount)

    def get(self, key: str) -> int:
        return self._own().get(key)

    def get_expiry(self, key: str) -> float:
        return self._own().get_expiry(key)

    def check(self) -> bool:
        return self._own().check()

    def reset(self) -> int | None:
        return self._own().reset()

    def clear(self, key: str) -> None:
        self._own().clear(key)

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        return self._own().acquire_entry(key, limit, expiry, amount=amount)

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        return self._own().get_moving_window(key, limit, expiry)


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


def _ip_key() -> str:
    return "ip:" + (get_remote_address() or "unknown")


def _demo_rate() -> str:
    return _config().demo_rate_limit


def _ip_message() -> str:
    return f"too many requests from this address: the limit is {_config().demo_rate_limit} (GENLINE_DEMO_RATE_LIMIT)"


def _is_replay() -> bool:
    """True when this submission names an Idempotency-Key of an existing job of the caller's tenant."""
    idem = request.headers.get("Idempotency-Key")
    key = _bearer()
    from web.requests import bad_text
    if not idem or not key or len(idem) > 255 or bad_text(idem):
        return False  # not a key the store can hold: the submission answers 422 itself
    from web.auth import tenant_for_key
    from web.submit import idempotent_job
    # Flask-Limiter swallows what this raises (swallow_errors); both reads keep a
    # database error for the submission's own reads to raise again (a 503 at once).
    tenant = tenant_for_key(key)
    return tenant is not None and idempotent_job(tenant, idem) is not None


limiter = Limiter(key_func=caller_key, headers_enabled=True, key_prefix="genline", storage_uri="genline-app://",
                  strategy="moving-window", swallow_errors=True)

submissions = limiter.shared_limit(submission_rate, scope="submissions", key_func=caller_key,
                                   error_message=_message, exempt_when=_is_replay)
"""Decorates a submission route: one limit per API key across every such route."""

per_ip = limiter.shared_limit(_demo_rate, scope="demo", key_func=_ip_key, error_message=_ip_message)
"""Decorates an unauthenticated route (the demo's submissions): one limit per client IP."""

RETRY_AFTER_STATUSES = (429, 503)


def _retry_after_only_where_meant(response):
    """Drop Flask-Limiter's Retry-After from answers that are not 429/503; keep a 503's own value."""
    own = g.get("genline_retry_after")
    if response.status_code not in RETRY_AFTER_STATUSES:
        response.headers.pop("Retry-After", None)
    elif response.status_code == 503 and own:
        response.headers["Retry-After"] = own
    return response


def init_app(app) -> None:
    """Count ``app``'s limits in its own Redis, answer a breach in the error shape."""
    cfg = app.extensions["genline.config"]
    app.extensions[STORAGE] = redisurl.limits_storage(cfg.redis_url, socket_connect_timeout=2,
                                                             socket_timeout=2)
    # Registered before the limiter's own after_request, so it runs after it (Flask runs them in reverse).
    app.after_request(_retry_after_only_where_meant)
    limiter.init_app(app)

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded):
        # Flask-Limiter's after_request adds Retry-After and X-RateLimit-* to this response.
        from web.api.errors import error_response
        return error_response(429, "rate_limited", exc.description)
