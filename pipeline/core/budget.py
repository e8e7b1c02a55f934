"""Pure arithmetic of a job's budget: attempt limits and backoff. No I/O."""
from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime

HARD_LIMIT_GRACE_S = 2.0
"""Seconds between an attempt's soft limit and the hard kill of its process."""


def remaining_s(deadline_at: datetime, now: datetime) -> float:
    """Seconds left before the job's deadline (negative once it passed)."""
    return (deadline_at - now).total_seconds()


def attempt_limits(timeout_s: float, deadline_at: datetime, now: datetime) -> tuple[float, float]:
    """(soft, hard) time limits of one attempt: min(timeout, time left) and soft + grace."""
    soft = max(0.1, min(timeout_s, remaining_s(deadline_at, now)))
    return soft, soft + HARD_LIMIT_GRACE_S


def backoff_s(attempt: int, *, base: float = 1.0, factor: float = 2.0, cap: float = 60.0,
              rng: random.Random | Callable[[], float] | None = None) -> float:
    """Exponential backoff with equal jitter after failed attempt number ``attempt`` (1-based).

    The ceiling is ``base * factor**(attempt-1)``, at most ``cap``; the delay is
    uniform in ``[ceiling / 2, ceiling]`` ("equal jitter": retries of many jobs
    spread out, yet none waits less than half the ceiling). genline's one backoff:
    generate attempts use the defaults, webhook deliveries ``factor=4``
    (``pipeline.adapters.webhooks.retry_delay_s``). ``rng``: a ``random.Random`` or
    a function returning a float in [0, 1).
    """
    draw = rng.random if isinstance(rng, random.Random) else (rng or random.random)
    ceiling = min(cap, base * (factor ** max(0, attempt - 1)))
    return ceiling / 2 + draw() * ceiling / 2


def retry_delay_s(attempt: int, retry_after: float | None, **kwargs) -> float:
    """The wait before the next attempt: the provider's Retry-After when larger."""
    delay = backoff_s(attempt, **kwargs)
    return max(delay, retry_after) if retry_after else delay


def fits_before_deadline(delay_s: float, deadline_at: datetime, now: datetime, min_attempt_s: float = 0.5) -> bool:
    """True when waiting ``delay_s`` still leaves time for an attempt before the deadline."""
    return remaining_s(deadline_at, now) - delay_s >= min_attempt_s
