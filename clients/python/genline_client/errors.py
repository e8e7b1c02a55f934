"""The client's errors: one root, one class per way a call can end badly."""
from __future__ import annotations

from typing import Any, Optional


class GenlineError(Exception):
    """Root of every error this client raises."""


class ApiError(GenlineError):
    """genline answered with its error shape (or a non-2xx status): ``status``, ``code``, ``message``, ``fields``."""

    def __init__(self, status: int, code: str, message: str, fields: Optional[dict] = None,
                 headers: Optional[dict] = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.fields = fields or {}
        self.headers = headers or {}


class RateLimited(ApiError):
    """429 after every retry; ``retry_after`` (seconds) says when to try again, ``idempotency_key`` what to send."""

    def __init__(self, status: int, code: str, message: str, fields: Optional[dict] = None,
                 headers: Optional[dict] = None, retry_after: Optional[float] = None):
        super().__init__(status, code, message, fields, headers)
        self.retry_after = retry_after
        self.idempotency_key: Optional[str] = None


class ConnectionFailed(GenlineError):
    """genline could not be reached (after every retry)."""


class JobEnded(GenlineError):
    """A waited-for job ended without completing; ``job`` is its final state."""

    def __init__(self, job: Any):
        error = job.error
        self.job = job
        self.job_id: str = job.id
        self.code: str = error.code if error else job.status
        self.message = error.message if error and error.message else f"job {job.id} {job.status}"
        super().__init__(f"job {job.id} {job.status} ({self.code}): {self.message}")


class JobFailed(JobEnded):
    """The job failed; ``code`` is its error code (``timeout``, ``provider_error``, ...)."""


class JobCanceled(JobEnded):
    """The job was canceled (by anyone) before it completed."""


class WaitTimeout(GenlineError):
    """The client's own wait ran out; the job goes on unless it was canceled (``canceled``)."""

    def __init__(self, job_id: str, timeout: float, job: Any = None, canceled: bool = False):
        self.job_id, self.timeout, self.job, self.canceled = job_id, timeout, job, canceled
        done = "; the job was canceled" if canceled else "; the job goes on"
        super().__init__(f"job {job_id} did not end within the client's {timeout:g} s wait{done}")


class WebhookVerificationError(GenlineError):
    """A webhook's signature, timestamp or headers did not verify: do not trust its body."""
