"""Where images live: outputs and uploaded inputs. ``open_storage`` picks the backend.

Output keys are deterministic per job, upload attempt and output: a repeated
upload of the same attempt (its task retried) overwrites instead of duplicating,
and an attempt that lost its lease (a worker cut off, whose upload the reaper gave
to another) writes beside the winner's objects, never over them.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

from pipeline.adapters.storage.base import Storage, StoredObject
from pipeline.adapters.storage.files import FileStorage
from pipeline.adapters.storage.s3 import S3Storage
from pipeline.core.media import EXTENSIONS


def output_key(job_id: str, n: int, media_type: str, attempt: str | None = None) -> str:
    """The storage key of output ``n`` of a job, under ``attempt`` (``attempt_dir``) when given."""
    folder = f"outputs/{job_id}/{attempt}" if attempt else f"outputs/{job_id}"
    return f"{folder}/{n}.{EXTENSIONS.get(media_type, 'bin')}"


def attempt_dir(owner: str) -> str:
    """The folder of one upload attempt's objects, from the owner of its lease (its task id).

    Why not one key per output: a worker cut off mid-upload whose lease expired
    may finish its write after another worker's upload completed the job; with a
    shared key that late write replaced the object the job points to. Its end
    then matches no row, so what it wrote is never pointed to.
    """
    return hashlib.sha256(owner.encode()).hexdigest()[:16]


def upload_key(upload_id: str, media_type: str) -> str:
    """The storage key of an uploaded input image."""
    return f"uploads/{upload_id}.{EXTENSIONS.get(media_type, 'bin')}"


@lru_cache(maxsize=8)
def _open(storage_url: str, endpoint_url: str | None) -> Storage:
    if storage_url.startswith("s3://"):
        return S3Storage.from_url(storage_url, endpoint_url)
    return FileStorage.from_url(storage_url)


def open_storage(cfg) -> Storage:
    """The storage named by ``STORAGE_URL`` (one instance per URL and process)."""
    return _open(cfg.storage_url, cfg.s3_endpoint_url)


__all__ = ["Storage", "StoredObject", "attempt_dir", "open_storage", "output_key", "upload_key", "EXTENSIONS"]
