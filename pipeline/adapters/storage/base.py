"""The storage interface every backend implements."""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StoredObject:
    key: str
    bytes: int
    media_type: str
    sha256: str


class Storage(Protocol):
    """Put, get, sign and delete objects by key. Failures raise ``StorageError``."""

    def put(self, key: str, data: bytes, media_type: str) -> StoredObject: ...

    def get(self, key: str) -> bytes: ...

    def signed_url(self, key: str, expires_s: int) -> str | None:
        """A URL anyone may fetch until it expires, or None when the API must serve it."""

    def delete_prefix(self, prefix: str, keep: Collection[str] = ()) -> int:
        """Delete every object under ``prefix`` except the keys in ``keep``; returns how many."""

    def check(self) -> None:
        """Raise ``StorageError`` when the backend cannot be reached (readiness)."""
