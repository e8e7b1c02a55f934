"""One exception root for the pipeline, with the error code on the class.

Whether a failure is retried is decided by ``retryable`` here and nowhere else.
"""
from __future__ import annotations


class GenlineError(Exception):
    """Root of every failure a job can end with."""

    code = "internal_error"
    retryable = False

    def __init__(self, message: str = "", *, retry_after: float | None = None, fields=None):
        super().__init__(message or self.__class__.__doc__)
        self.message = message or (self.__class__.__doc__ or self.code)
        self.retry_after = retry_after
        self.fields = fields or {}

    def as_dict(self, step: str | None = None) -> dict:
        """The ``error`` object of a job."""
        return {"code": self.code, "message": self.message, "retryable": self.retryable, "step": step}


class InvalidInput(GenlineError):
    """The request cannot be run as given."""
    code = "invalid_input"


class UnsafeContent(GenlineError):
    """The provider refused the prompt or image."""
    code = "unsafe_content"


class ProviderError(GenlineError):
    """The provider failed (5xx or a malformed answer)."""
    code = "provider_error"
    retryable = True


class RateLimited(GenlineError):
    """The provider asked us to slow down (429)."""
    code = "rate_limited"
    retryable = True


class NetworkError(GenlineError):
    """The provider could not be reached."""
    code = "network_error"
    retryable = True


class Timeout(GenlineError):
    """One attempt took longer than the job's timeout_s."""
    code = "timeout"
    retryable = True


class StorageError(GenlineError):
    """Storing or reading an image failed."""
    code = "storage_error"
    retryable = True


class DeadlineExceeded(GenlineError):
    """The job ran out of its deadline_s."""
    code = "deadline_exceeded"


class Canceled(GenlineError):
    """The job was canceled."""
    code = "canceled"


class InternalError(GenlineError):
    """genline itself failed."""
    code = "internal_error"


ERRORS = {cls.code: cls for cls in (
    InvalidInput, UnsafeContent, ProviderError, RateLimited, NetworkError,
    Timeout, StorageError, DeadlineExceeded, Canceled, InternalError,
)}

def error_for(code: str, message: str = "") -> GenlineError:
    """An instance of the error class for ``code`` (internal_error if unknown)."""
    return ERRORS.get(code, InternalError)(message)
