"""Rate limits (Flask-Limiter), counted in Redis so they hold across web processes."""
from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)


def init_app(app) -> None:
    cfg = app.extensions["genline.config"]
    app.config.setdefault("RATELIMIT_STORAGE_URI", cfg.redis_url)
    app.config.setdefault("RATELIMIT_STRATEGY", "moving-window")
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    limiter.init_app(app)
