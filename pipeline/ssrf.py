"""Refusing URLs that point into our own network (SSRF), for webhooks and input URLs.

Only http(s); the host's DNS answers are checked, not just its name, so a public
name that resolves to 127.0.0.1 or 169.254.169.254 is refused too. Private
addresses are allowed only when the operator says so
(``GENLINE_WEBHOOK_ALLOW_PRIVATE=1``).
"""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from pipeline.errors import InvalidInput

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """Every address the host resolves to (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidInput(f"the host {host!r} does not resolve ({exc})") from None
    return sorted({info[4][0] for info in infos})


def check_url(url: str, *, allow_private: bool = False, what: str = "url") -> str:
    """Return ``url`` if it may be fetched or posted to; ``InvalidInput`` saying why not."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidInput(f"{what} is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput(f"{what} must be an http or https URL")
    host = parts.hostname
    if not host:
        raise InvalidInput(f"{what} has no host")
    if parts.username or parts.password:
        raise InvalidInput(f"{what} must not carry credentials")
    if allow_private:
        return url
    if host.lower().rstrip(".") in METADATA_HOSTS:
        raise InvalidInput(f"{what} points at a cloud metadata service")
    for address in resolve(host, port):
        if not _is_public(address):
            raise InvalidInput(f"{what} resolves to {address}, a private, loopback or link-local address")
    return url
