"""The store's read of an API key on every authenticated request."""
from __future__ import annotations

from sqlalchemy import bindparam, select

from pipeline.store import autocommit
from pipeline.store.models import ApiKey, Tenant

_LIVE_KEY = (
    select(ApiKey.tenant_id, ApiKey.rate_limit.label("key_rate_limit"), Tenant.rate_limit.label("tenant_rate_limit"),
           ApiKey.id.label("key_id"))
    .outerjoin(Tenant, Tenant.id == ApiKey.tenant_id)
    .where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))
)


def live_key(key_hash: str):
    """``(tenant_id, key_rate_limit, tenant_rate_limit, key_id)`` of a live key with this hash, or None.

    Read from the database every time (no cache): a revoked key stops working
    on the next request.
    """
    found = autocommit.rows(_LIVE_KEY, {"key_hash": key_hash})
    return found[0] if found else None
