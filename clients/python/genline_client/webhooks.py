"""Standard Webhooks verification of genline's deliveries (DESIGN §4)."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Optional, Union

from genline_client.errors import WebhookVerificationError
from genline_client.models import WebhookMessage

TOLERANCE_S = 300
"""How far a delivery's timestamp may be from now: older (or future) messages are refused as replays."""


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret[len("whsec_"):] if secret.startswith("whsec_") else secret,
                                validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("the secret is not a whsec_<base64> signing secret") from None


def verify(body: Union[bytes, str], headers: Mapping[str, str], secret: str, *,
           tolerance_s: float = TOLERANCE_S, now: Optional[float] = None) -> WebhookMessage:
    """Check the ``webhook-signature`` of a delivery and return its message.

    ``body`` must be the raw request body, byte for byte. Raises WebhookVerificationError
    on a missing header, a timestamp outside ``tolerance_s``, or no matching signature.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (lowered.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        sent = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a whole number of seconds") from None
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        raise WebhookVerificationError(f"webhook-timestamp is more than {tolerance_s:g} s from now")
    raw = body.encode() if isinstance(body, str) else bytes(body)
    signed = f"{msg_id}.{stamp}.".encode() + raw
    expected = base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()
    offered = [part.split(",", 1)[1] for part in signatures.split() if part.startswith("v1,")]
    if not any(hmac.compare_digest(expected, sig) for sig in offered):
        raise WebhookVerificationError("no webhook-signature matches this body and secret")
    try:
        data = json.loads(raw)
    except ValueError:
        raise WebhookVerificationError("the body is not JSON") from None
    return WebhookMessage.from_dict(msg_id, data)


class Webhooks:
    """``client.webhooks``: ``verify(body, headers, secret)``."""

    @staticmethod
    def verify(body: Union[bytes, str], headers: Mapping[str, str], secret: str, *,
               tolerance_s: float = TOLERANCE_S, now: Optional[float] = None) -> WebhookMessage:
        return verify(body, headers, secret, tolerance_s=tolerance_s, now=now)
