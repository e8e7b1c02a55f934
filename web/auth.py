"""Who is calling: a tenant from a bearer API key, or a job-scoped read token."""
from __future__ import annotations

import hmac

from flask import current_app, g, request
from sqlalchemy.exc import SQLAlchemyError

from pipeline.core import tokens
from pipeline.store.models import db
from web import keys
from web.api.errors import ApiError


def config():
    return current_app.extensions["genline.config"]


def tenant_for_key(key: str) -> str | None:
    """The tenant of an API key: static keys from config, then keys made by the CLI."""
    for static_key, tenant in config().api_keys.items():
        if hmac.compare_digest(static_key.encode(), key.encode()):
            return tenant
    found = made_key(key)
    return found.tenant_id if found is not None else None


def made_key(key: str):
    """The live CLI-made key's row (``keys.live_key``), or None: read once per request.

    A submission needs it twice, for its rate limit and for its tenant; the
    next request reads it again, so a revoked key stops working at once.
    """
    seen = g.setdefault("genline_made_keys", {})
    if key not in seen:
        try:
            seen[key] = keys.live_key(keys.hash_key(key))
        except SQLAlchemyError as exc:
            # Kept, like the key: the rate limiter's read comes first and Flask-Limiter
            # swallows its error; reading again would wait out a dead link twice.
            db.session.rollback()
            seen[key] = exc
    found = seen[key]
    if isinstance(found, Exception):
        raise found
    return found


def bearer_key() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def require_tenant() -> str:
    """The calling tenant, or 401."""
    if getattr(g, "tenant_id", None):
        return g.tenant_id
    key = bearer_key()
    if key is None:
        raise ApiError(401, "unauthorized", "send an API key as 'Authorization: Bearer <key>'")
    tenant = tenant_for_key(key)
    if tenant is None:
        raise ApiError(401, "unauthorized", "the API key is not valid or was revoked")
    g.tenant_id = tenant
    g.api_key = key
    return tenant


def caller_id() -> str:
    """Who the calling key is, for the record: its id (``key_…``), or ``static:<tenant>`` for a config key."""
    tenant = require_tenant()
    found = made_key(g.api_key) if g.get("api_key") else None
    return found.key_id if found is not None else f"static:{tenant}"


def reader_for_job(job_id: str) -> str | None:
    """For read-only job routes: the tenant from a key, or None when a valid token for this job is given."""
    token = request.args.get("token")
    if token and bearer_key() is None:
        granted = tokens.job_from_token(config().secret_key, token, config().token_ttl_s)
        if granted != job_id:
            raise ApiError(401, "unauthorized", "the token is not valid for this job or has expired")
        return None
    return require_tenant()
