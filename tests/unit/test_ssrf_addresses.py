"""The SSRF address check (pipeline.adapters.ssrf) on its own: the IANA special-purpose
registries, IPv4 written inside IPv6, and URLs of the wrong form. No connection is made
(an IP literal resolves to itself); tests/test_ssrf.py covers the pinned connections."""
from __future__ import annotations

import pytest

from pipeline.adapters import ssrf
from pipeline.core.errors import InvalidInput

REFUSED = [
    # IPv4 special-purpose registry
    "0.0.0.0", "0.1.2.3", "10.0.0.1", "100.64.0.1", "127.0.0.1", "127.255.255.254", "169.254.169.254",
    "172.16.0.1", "172.31.255.255", "192.0.0.1", "192.0.0.9", "192.0.0.170", "192.0.2.1", "192.31.196.1",
    "192.52.193.1", "192.88.99.1", "192.168.1.1", "192.175.48.1", "198.18.0.1", "198.19.255.255",
    "198.51.100.1", "203.0.113.1", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    # IPv6 special-purpose registry
    "::", "::1", "100::1", "100:0:0:1::1", "2001::1", "2001:2::1", "2001:10::1", "2001:20::1", "2001:db8::1",
    "3fff::1", "2620:4f:8000::1", "5f00::1", "fc00::1", "fd12:3456::1", "fe80::1", "fec0::1", "ff02::1",
    "64:ff9b:1::a00:1",
    # IPv4 written inside IPv6
    "::ffff:127.0.0.1", "::ffff:8.8.8.8", "::127.0.0.1", "::169.254.169.254", "::8.8.8.8",
    "64:ff9b::127.0.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b::10.0.0.1",
    "2002:7f00:1::", "2002:a9fe:a9fe::1", "2002:c0a8:101::1",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2a00:1450:4001:82a::200e",
           "64:ff9b::808:808"]  # NAT64 of a public IPv4


@pytest.mark.parametrize("address", REFUSED)
def test_special_purpose_and_embedded_addresses_are_refused(address):
    assert not ssrf.is_public(address)
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(InvalidInput, match="special-purpose|private"):
        ssrf.check(f"https://{host}/hook")


@pytest.mark.parametrize("address", ALLOWED)
def test_public_unicast_addresses_pass(address):
    assert ssrf.is_public(address)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "https://user:pw@example.com/", "http://metadata/computeMetadata",
                                 "https:///nohost", "http://[::1"])
def test_urls_of_the_wrong_form_are_refused(url):
    with pytest.raises(InvalidInput):
        ssrf.check(url)
