"""Beat on celery-redbeat: no local file, and managed Redis over TLS with a self-signed certificate.

(Standby takeover and "only one beat sends" are in tests/test_recovery_times.py;
beats through a Redis restart in tests/test_recovery.py and test_lost_messages.py.)
"""
from __future__ import annotations

import datetime
import shutil
import ssl
import subprocess

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pipeline.worker.celery_app import redis_ssl_options
from tests import services
from tests.conftest import base_env
from tests.services import wait_for


def test_tls_options_follow_the_url():
    assert redis_ssl_options("redis://h:6379/0") is None
    assert redis_ssl_options("rediss://h:6379/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert redis_ssl_options("rediss://:pw@h:6379/0?ssl_cert_reqs=none") == {"ssl_cert_reqs": ssl.CERT_NONE}
    assert redis_ssl_options("rediss://h/0?ssl_cert_reqs=CERT_OPTIONAL&ssl_ca_certs=/ca.pem") == {
        "ssl_cert_reqs": ssl.CERT_OPTIONAL, "ssl_ca_certs": "/ca.pem"}


def self_signed(directory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1, as managed Redis hands out; (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "managed-redis")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_beat_needs_no_local_file_and_runs_over_tls_with_a_self_signed_certificate(pg_database, tmp_path, log_dir):
    # Given a TLS-only redis-server with a self-signed certificate, and a rediss:// URL with ssl_cert_reqs=none
    cert, key = self_signed(tmp_path)
    port = services.free_port()
    server = subprocess.Popen(
        [services.redis_server_binary(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path), "--tls-cert-file", cert, "--tls-key-file", key,
         "--tls-ca-cert-file", cert, "--tls-auth-clients", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none"
    client = redis.Redis.from_url(url)
    try:
        wait_for(client.ping, 10, "the TLS redis-server")
        # And no var/ directory anywhere the beat could write a schedule file
        env = base_env(pg_database, url, tmp_path.as_uri(), GENLINE_VAR_DIR=str(tmp_path / "absent"))
        # When the Procfile's beat starts
        beat = services.start_beat(env, log_dir)
        try:
            # Then it holds the lock in that Redis and queues the reaper there
            assert client.exists("genline:beat::lock")
            wait_for(lambda: sum(client.llen(k) for k in client.keys("io.high*")) >= 1, 15, "a reaper message")
            services.assert_stays(lambda: "Message Error" not in beat.log(), 0.5, "no message error in the beat's log")
        finally:
            beat.stop()
        assert not (tmp_path / "absent").exists() and not list(services.ROOT.glob("celerybeat-schedule*"))
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp_path / "absent", ignore_errors=True)
