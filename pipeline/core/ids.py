"""Identifiers: a prefix and a time-ordered, URL-safe body.

The body starts with the creation time in milliseconds, so ids sort by creation
and keyset pagination can page on the id alone. Within one process they sort by
creation inside a millisecond too (as ULID's monotonic mode does): jobs start by
priority, then by id, so two jobs submitted in the same millisecond must start in
the order they were submitted. Across processes, one millisecond apart is the
resolution.
"""
from __future__ import annotations

import os
import re
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
ID_PATTERN = re.compile(r"^[a-z]{2,4}_[0-9a-hjkmnp-tv-z]{26}$")


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


_RANDOM_BITS = 80
_last = {"millis": -1, "random": 0}
_lock = threading.Lock()


def new_id(prefix: str) -> str:
    """``prefix_`` + 10 characters of milliseconds + 16 random characters.

    In the millisecond of this process's previous id (or a clock that stepped
    back), the random part is the previous one plus a random step instead, so
    the new id sorts after it; still 2^64 guesses apart.
    """
    millis = int(time.time() * 1000)
    with _lock:
        if millis <= _last["millis"]:
            millis = _last["millis"]
            random = _last["random"] + 1 + int.from_bytes(os.urandom(8), "big")
            if random >> _RANDOM_BITS:  # the random part ran over: take the next millisecond
                millis, random = millis + 1, int.from_bytes(os.urandom(9), "big")
        else:
            random = int.from_bytes(os.urandom(9), "big")  # 72 bits: room above it for steps
        _last.update(millis=millis, random=random)
    return f"{prefix}_{_encode(millis, 10)}{_encode(random, 16)}"


def is_id(value: str, prefix: str) -> bool:
    """True when ``value`` is a well-formed id with that prefix."""
    return bool(ID_PATTERN.match(value or "")) and value.startswith(prefix + "_")
