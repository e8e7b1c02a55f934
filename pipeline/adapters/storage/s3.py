"""Storage in an S3 bucket (``STORAGE_URL=s3://bucket/prefix``), via boto3.

Works with AWS and S3-compatible servers (MinIO, R2, moto) through
``S3_ENDPOINT_URL``. Keys are the deterministic keys of ``pipeline.adapters.storage``
under the URL's prefix, so a repeated upload overwrites the same object. Every
object carries its ContentType and a SHA-256 checksum that S3 verifies on
receipt; outputs are handed out as presigned GET URLs that expire.
"""
from __future__ import annotations

import hashlib
import io
from collections.abc import Collection
from urllib.parse import urlparse

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.adapters.storage.base import StoredObject
from pipeline.core.errors import StorageError

MULTIPART_THRESHOLD = 8 * 1024 * 1024
"""Objects at least this large are sent as a multipart upload, in parts of this size."""

MAX_PRESIGN_S = 7 * 24 * 3600
"""SigV4 presigned URLs cannot live longer than a week; a longer GENLINE_URL_TTL_S is capped."""

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 30


def _error(action: str, key: str, exc: Exception) -> StorageError:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        detail = f"{err.get('Code', 'error')}: {err.get('Message', '')}".rstrip(": ")
    else:
        detail = f"{exc.__class__.__name__}: {exc}"
    return StorageError(f"could not {action} {key} in S3 ({detail})")


class S3Storage:
    """One bucket and key prefix. Failures raise ``StorageError``."""

    def __init__(self, bucket: str, prefix: str, client, multipart_threshold: int = MULTIPART_THRESHOLD):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client
        self.transfer = TransferConfig(multipart_threshold=multipart_threshold,
                                       multipart_chunksize=max(5 * 1024 * 1024, multipart_threshold))

    @classmethod
    def from_url(cls, storage_url: str, endpoint_url: str | None = None) -> S3Storage:
        """``s3://bucket/prefix``; credentials and region come from boto3's usual sources."""
        parts = urlparse(storage_url)
        if not parts.netloc:
            raise StorageError(f"STORAGE_URL {storage_url!r} names no bucket (use s3://bucket/prefix)")
        client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url,
            config=BotoConfig(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                              retries={"max_attempts": 3, "mode": "standard"},
                              signature_version="s3v4", s3={"addressing_style": "path"} if endpoint_url else {}),
        )
        return cls(parts.netloc, parts.path, client)

    def _key(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise StorageError(f"storage key escapes the prefix: {key!r}")
        return self.prefix + key

    def put(self, key: str, data: bytes, media_type: str) -> StoredObject:
        """Upload (multipart when large) with ContentType and a SHA-256 checksum S3 checks."""
        try:
            self.client.upload_fileobj(
                io.BytesIO(data), self.bucket, self._key(key),
                ExtraArgs={"ContentType": media_type, "ChecksumAlgorithm": "SHA256"},
                Config=self.transfer,
            )
        except (BotoCoreError, ClientError, OSError) as exc:
            raise _error("write", key, exc) from exc
        return StoredObject(key, len(data), media_type, hashlib.sha256(data).hexdigest())

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except (BotoCoreError, ClientError, OSError) as exc:
            raise _error("read", key, exc) from exc

    def signed_url(self, key: str, expires_s: int) -> str | None:
        """A presigned GET URL valid for ``expires_s`` seconds (signing is local: no request)."""
        try:
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
                ExpiresIn=min(int(expires_s), MAX_PRESIGN_S))
        except (BotoCoreError, ClientError) as exc:
            raise _error("sign", key, exc) from exc

    def delete_prefix(self, prefix: str, keep: Collection[str] = ()) -> int:
        """Delete every object under ``prefix`` except the keys in ``keep``; returns how many."""
        count = 0
        kept = {self._key(key) for key in keep}
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
            for page in pages:
                keys = [{"Key": o["Key"]} for o in page.get("Contents", []) if o["Key"] not in kept]
                if keys:
                    self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                    count += len(keys)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise _error("delete", prefix, exc) from exc
        return count

    def check(self) -> None:
        """Readiness: the bucket exists and our credentials may use it."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise _error("reach the bucket", self.bucket, exc) from exc
