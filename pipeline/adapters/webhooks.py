"""Webhooks: Standard Webhooks signing, secrets, and one delivery attempt at a time.

A message is one event of one job (``webhook-id`` = ``msg_<job>_<seq>``, the
same on every retry so receivers can de-duplicate). Each attempt is a row in
``webhook_deliveries``; a failed attempt stores ``next_attempt_at`` and is sent
again by ``pipeline.worker.webhook_tasks`` with exponential backoff over hours.
Delivery never touches the job row.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import random
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import requests
from redis.exceptions import LockError, RedisError
from sqlalchemy import func, select, update

from pipeline.adapters import events, metrics, ssrf
from pipeline.core import budget
from pipeline.core.errors import InvalidInput
from pipeline.store import jobs
from pipeline.store.models import Tenant, WebhookDelivery, db, utcnow

log = logging.getLogger("genline.webhooks")

SECRET_PREFIX = "whsec_"
CLAIM_S = 600
"""A claimed retry is sent again by the sweep if its worker vanished for this long."""
USER_AGENT = "genline-webhooks/1"
FIRST_ATTEMPT_KEY = "genline:webhook:first:{}:{}"
"""Redis lock of the first delivery attempt of one event (job id, event seq) while it runs."""


# --- secrets and signatures (pure) -------------------------------------------------------------

def derived_secret(secret_key: str) -> str:
    """A stable per-deployment secret when none is configured: derived from SECRET_KEY."""
    digest = hmac.new(secret_key.encode(), b"genline webhook signing secret v1", hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(digest).decode()


def key_bytes(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (a bare base64 secret is accepted too)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` (Standard Webhooks)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key_bytes(secret), signed, hashlib.sha256).digest()).decode()


def backoff_s(attempt: int, base_s: float, rng: Callable[[], float] = random.random) -> float:
    """Delay after failed delivery attempt ``attempt`` (1-based): genline's one backoff
    (``pipeline.core.budget.backoff_s``, equal jitter) growing 4x per attempt, uncapped.

    The delay is uniform in ``[2/3, 4/3] x base_s x 4^(attempt-1)``, ``base_s x 4^(attempt-1)``
    in the middle: with the default base of 10 s and 8 attempts the retries span about 15 hours.
    """
    return budget.backoff_s(attempt, base=base_s * 4 / 3, factor=4.0, cap=math.inf, rng=rng)


def message_id(job_id: str, seq: int) -> str:
    return f"msg_{job_id.split('_', 1)[-1]}_{seq}"


def secret_for(tenant_id: str, cfg) -> str:
    """The tenant's own secret, else GENLINE_WEBHOOK_SECRET, else the derived one."""
    tenant = db.session.get(Tenant, tenant_id)
    own = tenant.webhook_secret if tenant is not None else None
    db.session.rollback()
    return own or cfg.webhook_secret or derived_secret(cfg.secret_key)


def wants(webhook: dict | None, event_type: str) -> bool:
    """True when the job's webhook subscribed to this event type."""
    return bool(webhook and webhook.get("url") and event_type in (webhook.get("events") or ()))


# --- one attempt -------------------------------------------------------------------------------

@dataclass
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: float
    permanent: bool = False

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def payload(job, event: dict, cfg) -> bytes:
    """The body: ``{"type": "job.<event>", "timestamp", "data": {"event", "job"}}``."""
    from pipeline.service.representation import job_to_dict
    body = {"type": f"job.{event['type']}", "timestamp": event["created_at"],
            "data": {"event": event, "job": job_to_dict(job, cfg, cfg.public_url)}}
    return json.dumps(body, separators=(",", ":")).encode()


def post(url: str, msg_id: str, body: bytes, secret: str, cfg) -> Outcome:
    """Check the URL against SSRF now (DNS may have changed since submit) and POST once to the checked address."""
    started = time.monotonic()
    timestamp = int(time.time())
    try:
        signature = sign(secret, msg_id, timestamp, body)
    except (binascii.Error, ValueError):
        return Outcome(None, "the webhook secret is not whsec_<base64>; fix the tenant's webhook_secret", 0.0, permanent=True)
    headers = {
        "content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp), "webhook-signature": signature,
    }
    try:
        # No redirects: a 3xx could point anywhere, including into our own network.
        # open_url resolves and checks again and connects to that very address (no DNS rebinding).
        with ssrf.open_url("POST", url, allow_private=cfg.webhook_allow_private, what="webhook.url",
                           data=body, headers=headers, timeout=cfg.webhook_timeout_s) as response:
            status = response.status_code
    except InvalidInput as exc:
        return Outcome(None, f"refused: {exc.message}", _ms(started), permanent=True)
    except requests.RequestException as exc:
        return Outcome(None, f"{exc.__class__.__name__}: {str(exc)[:300]}", _ms(started))
    error = None if 200 <= status < 300 else f"HTTP {status}"
    return Outcome(status, error, _ms(started))


def outcome_of(outcome: Outcome) -> str:
    """The ``outcome`` label of an attempt: delivered, http_error, network_error, or refused (not sent)."""
    if outcome.delivered:
        return "delivered"
    if outcome.status_code is not None:
        return "http_error"
    return "refused" if outcome.permanent else "network_error"


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def claim_retry(delivery_id: int) -> bool:
    """Take a scheduled retry (the countdown message and the sweep may both send it)."""
    now = utcnow()
    stmt = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.next_attempt_at.is_not(None),
               WebhookDelivery.next_attempt_at <= now + timedelta(seconds=5))
        .values(next_attempt_at=now + timedelta(seconds=CLAIM_S))
        .execution_options(synchronize_session=False)
    )
    taken = db.session.execute(stmt).rowcount == 1
    db.session.commit()
    return taken


def attempts_of(job_id: str, seq: int) -> int:
    count = db.session.execute(
        select(func.count()).select_from(WebhookDelivery)
        .where(WebhookDelivery.job_id == job_id, WebhookDelivery.event_seq == seq)
    ).scalar_one()
    db.session.rollback()
    return count


def attempt(job_id: str, seq: int, cfg, previous_id: int | None = None, fresh: bool = False):
    """One delivery attempt of event ``seq``; returns (row, delay_s or None when no retry follows).

    ``previous_id`` is the failed attempt this one retries; ``fresh`` starts a
    redelivery. A first attempt that already happened (a duplicate message) is skipped.
    """
    if previous_id is not None and not claim_retry(previous_id):
        return None, None
    if previous_id is None and not fresh:
        # Two messages of one first attempt (the notify step's, and the sweep's for
        # one it thought lost) may run at once: one posts, the other skips.
        with _first_attempt(job_id, seq, cfg) as mine:
            if not mine or attempts_of(job_id, seq):
                return None, None
            return _attempt(job_id, seq, cfg, previous_id, 0)
    return _attempt(job_id, seq, cfg, previous_id, attempts_of(job_id, seq))


@contextmanager
def _first_attempt(job_id: str, seq: int, cfg):
    """Yield False while another process holds the first attempt of event ``seq``, else True.

    Without Redis it goes ahead unguarded, as before the guard existed: a
    duplicate of a message is far rarer than an event never sent.
    """
    lock = None
    try:
        lock = events.client().lock(FIRST_ATTEMPT_KEY.format(job_id, seq), timeout=cfg.webhook_timeout_s + 30,
                                    blocking=False)
        held = lock.acquire()
    except RedisError as exc:
        log.warning("webhook first attempt unguarded job_id=%s seq=%s error=%s", job_id, seq, exc.__class__.__name__)
        lock, held = None, True
    try:
        yield held
    finally:
        if held and lock is not None:
            try:
                lock.release()
            except (LockError, RedisError):
                pass  # expired, or Redis went away: it lapses on its own


def _attempt(job_id: str, seq: int, cfg, previous_id: int | None, done: int):
    job = jobs.get(job_id)
    found = jobs.events_after(job_id, seq - 1, limit=1)
    if job is None or not job.webhook or not found or found[0]["id"] != seq:
        return None, None
    event, url, msg_id = found[0], job.webhook["url"], message_id(job_id, seq)
    outcome = post(url, msg_id, payload(job, event, cfg), secret_for(job.tenant_id, cfg), cfg)
    number = done + 1
    delay = None
    if not outcome.delivered and not outcome.permanent and number < cfg.webhook_max_attempts:
        delay = backoff_s(number, cfg.webhook_retry_base_s)
    row = WebhookDelivery(
        job_id=job_id, message_id=msg_id, event_type=event["type"], event_seq=seq, attempt=number,
        url=url, status_code=outcome.status_code, error=outcome.error, duration_ms=outcome.duration_ms,
        delivered=outcome.delivered, next_attempt_at=utcnow() + timedelta(seconds=delay) if delay is not None else None,
    )
    db.session.add(row)
    if previous_id is not None:
        db.session.execute(update(WebhookDelivery).where(WebhookDelivery.id == previous_id)
                           .values(next_attempt_at=None).execution_options(synchronize_session=False))
    db.session.commit()
    metrics.webhook_delivery(outcome_of(outcome))
    log.info("webhook attempt job_id=%s seq=%s event=%s attempt=%s status=%s delivered=%s error=%s next_s=%s",
             job_id, seq, event["type"], number, outcome.status_code, outcome.delivered, outcome.error,
             None if delay is None else round(delay, 2))
    return row, delay


def as_dict(row: WebhookDelivery) -> dict:
    """A delivery attempt as the API shows it."""
    from pipeline.service.representation import iso
    return {
        "id": row.id, "message_id": row.message_id, "event_type": row.event_type, "event_seq": row.event_seq,
        "attempt": row.attempt, "url": row.url, "status_code": row.status_code, "error": row.error,
        "duration_ms": row.duration_ms, "delivered": row.delivered,
        "next_attempt_at": iso(row.next_attempt_at), "created_at": iso(row.created_at),
    }


def log_of(job_id: str) -> list[dict]:
    """Every attempt for a job, oldest first."""
    rows = db.session.execute(
        select(WebhookDelivery).where(WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.id)
    ).scalars().all()
    out = [as_dict(r) for r in rows]
    db.session.rollback()
    return out
