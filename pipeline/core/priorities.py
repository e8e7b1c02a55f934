"""Job priorities: the one table of names and their order. No I/O here."""
from __future__ import annotations

from typing import Literal, get_args

Priority = Literal["high", "normal", "low"]
"""A job's ``priority`` as the API takes and shows it."""

PRIORITIES: tuple[str, ...] = get_args(Priority)
"""Every priority, first served first."""

DEFAULT = "normal"

RANK = {name: rank for rank, name in enumerate(PRIORITIES)}
"""Order of service: lower runs first (high 0, normal 1, low 2)."""


def known(priority: str | None) -> str:
    """``priority`` when it is one of ``PRIORITIES``, else the default."""
    return priority if priority in RANK else DEFAULT


def ahead_of(priority: str | None) -> list[str]:
    """The priorities served before ``priority``."""
    rank = RANK[known(priority)]
    return [p for p in PRIORITIES if RANK[p] < rank]
