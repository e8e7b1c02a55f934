"""Where images live: outputs and uploaded inputs. ``open_storage`` picks the backend.

Keys are deterministic per job and output, so a repeated upload overwrites
instead of duplicating.
"""
from __future__ import annotations

from functools import lru_cache

from pipeline.adapters.storage.base import Storage, StoredObject
from pipeline.adapters.storage.files import FileStorage
from pipeline.adapters.storage.s3 import S3Storage
from pipeline.core.media import EXTENSIONS


def output_key(job_id: str, n: int, media_type: str) -> str:
    """The storage key of output ``n`` of a job."""
    return f"outputs/{job_id}/{n}.{EXTENSIONS.get(media_type, 'bin')}"


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


__all__ = ["Storage", "StoredObject", "open_storage", "output_key", "upload_key", "EXTENSIONS"]
