"""A redis-server that speaks only TLS, with a self-signed certificate made here,
as managed Redis (Heroku Redis, Render Key Value) hands out behind ``rediss://``."""
from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

import redis as redis_lib

from tests import services


class TLSRedisServer:
    """redis-server 6+ with ``--port 0 --tls-port N``: a plain connection gets nothing."""

    def __init__(self):
        self.port = services.free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="genline-tls-redis-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The URL a platform hands out: TLS, certificate not verified (it is self-signed)."""
        return f"rediss://127.0.0.1:{self.port}/0?ssl_cert_reqs=none"

    def _certificate(self) -> None:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=genline-test-redis", "-keyout", str(self.dir / "key.pem"),
                        "-out", str(self.dir / "cert.pem")], check=True, capture_output=True)

    def start(self) -> TLSRedisServer:
        if not shutil.which("openssl"):
            raise services.ServiceMissing("no openssl to make the test certificate: apt-get install openssl")
        self._certificate()
        self.proc = subprocess.Popen(
            [services.redis_server_binary(), "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(self.dir / "cert.pem"), "--tls-key-file", str(self.dir / "key.pem"),
             "--tls-ca-cert-file", str(self.dir / "cert.pem"), "--tls-auth-clients", "no",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        services.wait_for(lambda: self.client().ping(), 10, f"TLS redis on port {self.port}")
        return self

    def client(self) -> redis_lib.Redis:
        return redis_lib.Redis(port=self.port, ssl=True, ssl_cert_reqs=ssl.CERT_NONE, socket_timeout=5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
