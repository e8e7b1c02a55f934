"""Signed, expiring tokens: job-scoped read tokens and file URLs (itsdangerous)."""
from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

JOB_READ = "genline.job-read"
FILE_READ = "genline.file-read"


def _serializer(secret: str, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=salt)


def job_token(secret: str, job_id: str) -> str:
    """A token that grants reading one job (and its events and outputs) and nothing else."""
    return _serializer(secret, JOB_READ).dumps(job_id)


def job_from_token(secret: str, token: str, max_age: int) -> str | None:
    """The job id a token grants, or None if it is forged or expired."""
    try:
        return _serializer(secret, JOB_READ).loads(token, max_age=max_age)
    except (BadSignature, SignatureExpired):
        return None


def file_token(secret: str, key: str) -> str:
    return _serializer(secret, FILE_READ).dumps(key)


def key_from_file_token(secret: str, token: str, max_age: int) -> str | None:
    try:
        return _serializer(secret, FILE_READ).loads(token, max_age=max_age)
    except (BadSignature, SignatureExpired):
        return None
