"""API keys made by the ops CLI: shown once, stored as SHA-256 hashes."""
from __future__ import annotations

import hashlib
import secrets

import limits
from sqlalchemy import bindparam, select, update

from pipeline.core.ids import new_id
from pipeline.store import onetrip
from pipeline.store.models import ApiKey, Tenant, db, utcnow

KEY_PREFIX = "gl_"


def hash_key(key: str) -> str:
    """Keys are 32 random bytes, so a plain SHA-256 (no salt, no stretching) is enough."""
    return hashlib.sha256(key.encode()).hexdigest()


def ensure_tenant(tenant_id: str) -> None:
    if db.session.get(Tenant, tenant_id) is None:
        db.session.add(Tenant(id=tenant_id))


def _check_rate(option: str, rate: str | None) -> None:
    if rate is None:
        return
    try:
        parsed = limits.parse_many(rate)
    except ValueError:
        parsed = []
    if not parsed or len(rate) > 32 or any(item.amount < 1 for item in parsed):
        raise ValueError(f"{option}: {rate!r} is not a limit like 60/minute or 5/second;100/hour "
                         "(at most 32 characters)")


def check_key_limits(tenant_id: str, rate_limit: str | None, concurrency: int | None,
                     throttle: str | None = None) -> None:
    """Refuse values the API could not use later (a bad limit would otherwise fail open)."""
    if not tenant_id or len(tenant_id) > 64:
        raise ValueError("tenant: must be 1..64 characters")
    _check_rate("--rate-limit", rate_limit)
    _check_rate("--throttle", throttle)
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"--concurrency: must be at least 1, got {concurrency}")


def create_key(tenant_id: str, name: str = "", rate_limit: str | None = None,
               concurrency: int | None = None, throttle: str | None = None) -> tuple[ApiKey, str]:
    """Make a key for a tenant; returns the row and the key itself (shown once).

    ``throttle``: generate starts of the tenant over time (overrides
    GENLINE_TENANT_THROTTLE, see ``pipeline.service.admission``).
    Raises ValueError naming a bad tenant, rate limit, concurrency or throttle.
    """
    check_key_limits(tenant_id, rate_limit, concurrency, throttle)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    ensure_tenant(tenant_id)
    row = ApiKey(id=new_id("key"), tenant_id=tenant_id, name=name, key_hash=hash_key(secret),
                 prefix=secret[:10], rate_limit=rate_limit, concurrency=concurrency, throttle=throttle)
    db.session.add(row)
    db.session.commit()
    return row, secret


def revoke_key(key_id: str) -> bool:
    done = db.session.execute(
        update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
    ).rowcount == 1
    db.session.commit()
    return done


def list_keys(tenant_id: str | None = None) -> list[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.created_at)
    if tenant_id:
        stmt = stmt.where(ApiKey.tenant_id == tenant_id)
    rows = db.session.execute(stmt).scalars().all()
    db.session.rollback()
    return list(rows)


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
    found = onetrip.rows(_LIVE_KEY, {"key_hash": key_hash})
    return found[0] if found else None
