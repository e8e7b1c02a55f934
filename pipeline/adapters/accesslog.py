"""Credentials out of the access log: ``/files/<token>`` links and ``?token=`` values.

A signed output link *is* its credential: anyone who reads the log line could
fetch the image until it expires. gunicorn hands its access-log atoms to the
``gunicorn.access`` logger as the record's arguments, so a standard
``logging.Filter`` can redact them before any handler formats the line.
"""
from __future__ import annotations

import logging
import re

REDACTED = "<redacted>"
_PATTERNS = (
    (re.compile(r"(/files/)[^/?#\s\"]+"), r"\g<1>" + REDACTED),
    (re.compile(r"((?:^|[?&])token=)[^&#\s\"]*"), r"\g<1>" + REDACTED),
)


def redact(text: str) -> str:
    """``text`` with file-link tokens and ``token=`` values replaced."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactCredentials(logging.Filter):
    """Rewrites every string argument of an access-log record (never drops the record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, dict):
            for key, value in list(args.items()):
                if isinstance(value, str):
                    args[key] = redact(value)
        elif isinstance(args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install(logger_name: str = "gunicorn.access") -> None:
    """Add the filter to the access logger once."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactCredentials) for f in logger.filters):
        logger.addFilter(RedactCredentials())
