"""Refusing URLs that point into our own network (SSRF): one check for webhooks,
input fetches and every redirect hop, made on the address actually connected to.

- Only http(s), no credentials in the URL, no cloud metadata host names.
- The host is resolved **once**; every answer must be a public unicast address
  (``is_public``: none of the IANA special-purpose IPv4/IPv6 blocks that are not
  globally reachable, no multicast, and no IPv4 written inside IPv6 — mapped,
  IPv4-compatible, NAT64, 6to4, Teredo — whose IPv4 is not public).
- ``open_url`` then connects to that checked address itself (``PinnedAdapter``),
  keeping the Host header, TLS SNI and certificate check on the name, so a
  rebinding DNS answer between check and connect reaches nothing else.

Private addresses are allowed only when the operator says so
(``GENLINE_WEBHOOK_ALLOW_PRIVATE=1``); the connection is pinned all the same.
"""
from __future__ import annotations

import ipaddress
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from pipeline.core.errors import InvalidInput

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}

# IANA IPv4 and IPv6 Special-Purpose Address Registries (checked against the
# registries of 2025), plus multicast and deprecated blocks. Blocks marked
# globally reachable there that only carry anycast infrastructure (AS112, AMT,
# TURN) are refused too: a webhook or image host never lives there.
BLOCKED_V4 = tuple(ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24",
    "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
))
BLOCKED_V6 = tuple(ipaddress.IPv6Network(n) for n in (
    "::/96",            # unspecified, loopback and IPv4-compatible ::a.b.c.d (deprecated)
    "::ffff:0:0/96",    # IPv4-mapped (its IPv4 is checked instead; never connected to as IPv6)
    "64:ff9b:1::/48",   # local-use IPv4/IPv6 translation
    "100::/64", "100:0:0:1::/64",  # discard-only, dummy prefix
    "2001::/23",        # IETF protocol assignments: Teredo, benchmarking, ORCHID, AMT, AS112
    "2001:db8::/32", "3fff::/20",  # documentation
    "2620:4f:8000::/48",  # AS112
    "5f00::/16",        # SRv6 SIDs
    "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
))
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address written inside an IPv6 one (mapped, compatible, NAT64, 6to4, Teredo client), if any."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip in NAT64 or ip in BLOCKED_V6[0]:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    return None


def is_public(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for a globally reachable unicast address outside every blocked block (see the tables)."""
    ip = ipaddress.ip_address(str(address).split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None and not is_public(inner):
            return False
        if ip in NAT64:
            return True  # the well-known NAT64 prefix reaches its (public) IPv4
        if any(ip in net for net in BLOCKED_V6):
            return False
    elif any(ip in net for net in BLOCKED_V4):
        return False
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """Every address the host resolves to (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidInput(f"the host {host!r} does not resolve ({exc})") from None
    return sorted({info[4][0] for info in infos})


@dataclass(frozen=True)
class Target:
    """A URL that passed the check, and the one address to connect to for it."""

    url: str
    scheme: str
    host: str
    port: int
    address: str


def check(url: str, *, allow_private: bool = False, what: str = "url") -> Target:
    """Check ``url`` and pick its address (resolved once); ``InvalidInput`` saying why it may not be used."""
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
    if not allow_private and host.lower().rstrip(".") in METADATA_HOSTS:
        raise InvalidInput(f"{what} points at a cloud metadata service")
    addresses = resolve(host, port)
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise InvalidInput(f"{what} resolves to {address}, a private, loopback or link-local address "
                                   "(or another special-purpose block)")
    if not addresses:
        raise InvalidInput(f"the host {host!r} does not resolve")
    return Target(url, parts.scheme, host, port, addresses[0].split("%", 1)[0])


def check_url(url: str, *, allow_private: bool = False, what: str = "url") -> str:
    """Return ``url`` if it may be fetched or posted to; ``InvalidInput`` saying why not (submit-time check)."""
    check(url, allow_private=allow_private, what=what)
    return url


class PinnedAdapter(HTTPAdapter):
    """A requests transport that connects to one checked address for every request it sends.

    The pool is keyed on the address; the URL's host name stays in the Host
    header, in TLS SNI (``server_hostname``) and in certificate verification
    (``assert_hostname``), so HTTPS to a name still proves it is that name.
    """

    def __init__(self, target: Target, **kwargs):
        self.target = target
        super().__init__(**kwargs)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        sent_to = urlsplit(request.url)
        if (sent_to.hostname or "").lower() != self.target.host.lower():
            raise InvalidInput("the request left the host that was checked")  # never connect unchecked
        host_params["host"] = self.target.address
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = self.target.host
            pool_kwargs["assert_hostname"] = self.target.host
        return host_params, pool_kwargs

    def send(self, request, *args, **kwargs):
        default_port = 443 if self.target.scheme == "https" else 80
        host = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
        request.headers["Host"] = host if self.target.port == default_port else f"{host}:{self.target.port}"
        return super().send(request, *args, **kwargs)


@contextmanager
def open_url(method: str, url: str, *, allow_private: bool = False, what: str = "url", **kwargs):
    """Check ``url`` and send one request to the checked address (never following redirects).

    Yields the ``requests.Response``; ``kwargs`` go to ``Session.request``.
    Proxies from the environment are not used (they would connect elsewhere);
    a CA bundle named by REQUESTS_CA_BUNDLE or SSL_CERT_FILE still is.
    """
    target = check(url, allow_private=allow_private, what=what)
    with requests.Session() as session:
        session.trust_env = False
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or True
        adapter = PinnedAdapter(target)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        response = session.request(method, url, allow_redirects=False, **kwargs)
        try:
            yield response
        finally:
            response.close()
