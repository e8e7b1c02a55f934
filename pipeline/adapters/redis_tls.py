"""TLS for Redis from its URL alone.

Managed Redis (Heroku Redis, Render Key Value, Upstash …) hands out
``rediss://`` URLs, often with a self-signed certificate, to be used as
``rediss://…?ssl_cert_reqs=none``. redis-py and Flask-Limiter's storage read
that query themselves, but Celery does not pass it everywhere: Flower's broker
client and celery-redbeat read ``broker_use_ssl`` instead. ``ssl_options``
turns the URL's query into that setting, so every client agrees with the URL.
"""
from __future__ import annotations

import ssl
from urllib.parse import parse_qs, urlsplit

CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
"""The values ``ssl_cert_reqs`` takes in a URL (also as ``CERT_NONE`` …), as redis-py and kombu spell them."""

PATH_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def ssl_options(url: str) -> dict | None:
    """``broker_use_ssl`` for a ``rediss://`` URL (None for any other); ValueError on a bad value.

    Without ``ssl_cert_reqs`` the certificate is verified (``required``), as redis-py does.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    raw = query.get("ssl_cert_reqs", "required")
    cert_reqs = CERT_REQS.get(raw.lower().removeprefix("cert_"))
    if cert_reqs is None:
        raise ValueError(f"ssl_cert_reqs must be one of {', '.join(CERT_REQS)}, got {raw!r}")
    options = {"ssl_cert_reqs": cert_reqs}
    options.update({name: query[name] for name in PATH_OPTIONS if query.get(name)})
    return options
