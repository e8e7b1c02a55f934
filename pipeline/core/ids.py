"""Identifiers: a prefix and a time-ordered, URL-safe body.

The body starts with the creation time in milliseconds, so ids sort by creation
and keyset pagination can page on the id alone.
"""
from __future__ import annotations

import os
import re
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
ID_PATTERN = re.compile(r"^[a-z]{2,4}_[0-9a-hjkmnp-tv-z]{26}$")


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """``prefix_`` + 10 characters of milliseconds + 16 random characters."""
    millis = int(time.time() * 1000)
    return f"{prefix}_{_encode(millis, 10)}{_encode(int.from_bytes(os.urandom(10), 'big'), 16)}"


def is_id(value: str, prefix: str) -> bool:
    """True when ``value`` is a well-formed id with that prefix."""
    return bool(ID_PATTERN.match(value or "")) and value.startswith(prefix + "_")
