"""SSRF: one address check (pipeline.adapters.ssrf) for webhooks, input fetches and
redirects, covering the IANA special-purpose registries and IPv4 written inside
IPv6, and connections made to the very address that was checked."""
from __future__ import annotations

import datetime
import http.server
import ipaddress
import ssl
import threading
from types import SimpleNamespace

import pytest
import requests

from pipeline.adapters import ssrf
from pipeline.core.errors import InvalidInput
from tests.services import free_port

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


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers 200 with the Host header it saw; /redirect?to=URL answers 302."""

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.end_headers()
            return
        body = (self.headers.get("Host") or "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


def serve(tls: ssl.SSLContext | None = None):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Recorder)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for the name genline.test (no DNS knows it) and 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "genline.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("genline.test"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    root = tmp_path_factory.mktemp("tls")
    (root / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (root / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(root / "cert.pem", root / "key.pem")
    return SimpleNamespace(ca=str(root / "cert.pem"), context=context)


def pinned_get(url: str, target: ssrf.Target, **kwargs) -> requests.Response:
    with requests.Session() as session:
        session.mount("http://", ssrf.PinnedAdapter(target))
        session.mount("https://", ssrf.PinnedAdapter(target))
        return session.get(url, timeout=5, **kwargs)


def test_the_connection_goes_to_the_checked_address_not_a_new_dns_answer():
    # Given a server on 127.0.0.1 and a name that no resolver knows (a rebinding name's second answer
    # cannot matter if no second lookup is made)
    server = serve()
    port = server.server_address[1]
    try:
        target = ssrf.Target(f"http://rebind.invalid:{port}/", "http", "rebind.invalid", port, "127.0.0.1")
        # When it is fetched through the pinned transport
        answer = pinned_get(target.url, target)
        # Then it reached the checked address, and the Host header still names the URL's host
        assert answer.status_code == 200 and answer.text == f"rebind.invalid:{port}"
    finally:
        server.shutdown()


def test_https_to_a_pinned_address_still_verifies_the_name(certificate):
    server = serve(certificate.context)
    port = server.server_address[1]
    try:
        good = ssrf.Target(f"https://genline.test:{port}/", "https", "genline.test", port, "127.0.0.1")
        assert pinned_get(good.url, good, verify=certificate.ca).text == f"genline.test:{port}"
        # A name the certificate does not cover fails verification, even on the same address
        other = ssrf.Target(f"https://other.test:{port}/", "https", "other.test", port, "127.0.0.1")
        with pytest.raises(requests.exceptions.SSLError):
            pinned_get(other.url, other, verify=certificate.ca)
    finally:
        server.shutdown()


def test_open_url_checks_before_connecting():
    server = serve()
    try:
        with pytest.raises(InvalidInput, match="127.0.0.1"):
            with ssrf.open_url("GET", f"http://127.0.0.1:{server.server_address[1]}/", timeout=5):
                pass
    finally:
        server.shutdown()


def test_an_input_fetch_never_follows_https_to_http(certificate, monkeypatch):
    from pipeline.adapters.inputs import fetch_url
    # Given an https server (127.0.0.1, allowed here as in tests) that redirects to plain http
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certificate.ca)
    plain = serve()
    tls = serve(certificate.context)
    cfg = SimpleNamespace(webhook_allow_private=True, max_upload_bytes=1024)
    try:
        downgrade = f"https://127.0.0.1:{tls.server_address[1]}/redirect?to=http://127.0.0.1:{plain.server_address[1]}/x"
        # Then the redirect is refused, though an https one to the same server is followed
        with pytest.raises(InvalidInput, match="https to http"):
            fetch_url(downgrade, "inputs.images[0]", cfg)
        upgrade = f"https://127.0.0.1:{tls.server_address[1]}/redirect?to=/image"
        assert fetch_url(upgrade, "inputs.images[0]", cfg) == f"127.0.0.1:{tls.server_address[1]}".encode()
    finally:
        plain.shutdown()
        tls.shutdown()
