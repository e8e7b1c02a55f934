"""SSRF: connections made to the very address that was checked, TLS names still
verified, and redirects checked (the address check itself is in
tests/unit/test_ssrf_addresses.py)."""
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
