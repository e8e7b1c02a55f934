"""The Python client's pure parts (no server), and its packaging."""
from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import sys
import tarfile
import time

import pytest

from tests import services

try:
    import genline_client  # noqa: F401
except ImportError:  # make install installs it (pip install -e ./clients/python)
    message = "genline_client is not installed: pip install -e ./clients/python"
    pytest.fail(message, pytrace=False) if services.IN_CI else pytest.skip(message, allow_module_level=True)

from genline_client import Budget, Job, WebhookVerificationError, verify_webhook  # noqa: E402
from genline_client._core import SSEDecoder, backoff_s, create_body, retry_after_s, target  # noqa: E402

SECRET = "whsec_" + base64.b64encode(b"a test secret of thirty-two bytes").decode()


def signed(body: bytes, msg_id="msg_1", at=None, secret=SECRET) -> dict:
    at = int(time.time()) if at is None else at
    key = base64.b64decode(secret.split("_", 1)[1])
    sig = base64.b64encode(hmac.new(key, f"{msg_id}.{at}.".encode() + body, hashlib.sha256).digest()).decode()
    return {"Webhook-Id": msg_id, "Webhook-Timestamp": str(at), "Webhook-Signature": f"v0,x v1,{sig}"}


def test_backoff_doubles_to_its_cap_with_jitter_in_the_upper_half():
    assert backoff_s(0, rng=lambda: 0) == 0.25 and backoff_s(0, rng=lambda: 1) == 0.5
    assert backoff_s(3, rng=lambda: 1) == 4.0 and backoff_s(10, rng=lambda: 1) == 8.0


def test_retry_after_is_seconds_or_an_http_date():
    assert retry_after_s("3") == 3.0 and retry_after_s(None) is None and retry_after_s("soon") is None
    now = 1767225600.0  # 2026-01-01T00:00:00Z
    assert retry_after_s("Thu, 01 Jan 2026 00:00:05 GMT", now=now) == 5.0


def test_sse_decoder_follows_the_whatwg_rules():
    d = SSEDecoder()
    lines = ["retry: 2000", "", ": heartbeat", "", "id: 3", "event: progress", 'data: {"a":', "data:1}", ""]
    assert [m for m in map(d.feed, lines) if m] == [{"id": "3", "event": "progress", "data": '{"a":\n1}'}]


def test_create_body_sends_only_what_was_given():
    body = create_body("p", size="64x64", params={"simulate": {"latency_s": 1}}, budget=Budget(deadline_s=30),
                       images=["upl_1"], priority="high")
    assert body == {"prompt": "p", "params": {"simulate": {"latency_s": 1}, "size": "64x64"},
                    "inputs": {"images": ["upl_1"]}, "budget": {"deadline_s": 30}, "priority": "high"}


def test_a_job_without_key_is_read_by_its_token_urls_and_with_a_key_by_id():
    job = Job.from_dict({"id": "job_1", "status": "queued", "urls": {"self": "http://h/v1/jobs/job_1?token=t",
                                                                      "events": "http://h/v1/jobs/job_1/events?token=t"},
                         "a_new_field": 1})
    assert target("http://api", job, have_key=False).events_url.endswith("events?token=t")
    assert target("http://api", job, have_key=True).self_url == "http://api/v1/jobs/job_1"
    assert job.raw["a_new_field"] == 1 and not job.terminal


def test_webhook_verification():
    body = b'{"type":"job.completed","timestamp":"t","data":{"event":{"id":4,"type":"completed"},"job":null}}'
    message = verify_webhook(body, signed(body), SECRET)
    assert message.type == "job.completed" and message.event.id == 4 and message.id == "msg_1"
    for bad in (lambda: verify_webhook(body + b" ", signed(body), SECRET),
                lambda: verify_webhook(body, signed(body, at=1000), SECRET),
                lambda: verify_webhook(body, {}, SECRET),
                lambda: verify_webhook(body, signed(body), "not base64!")):
        with pytest.raises(WebhookVerificationError):
            bad()


def test_the_distribution_builds_with_its_version_types_and_only_httpx(tmp_path):
    # An sdist through setuptools' own PEP 517 backend (no network, no wheel package needed)
    build = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", build, str(tmp_path)], cwd=services.ROOT / "clients" / "python",
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    sdist = tmp_path / done.stdout.strip().splitlines()[-1]
    top = sdist.name.removesuffix(".tar.gz")
    assert top.replace("-", "_") == "genline_client_0.1.0"  # the name spelling depends on setuptools' age
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        info = tar.extractfile(f"{top}/PKG-INFO").read().decode()
        requires = tar.extractfile(f"{top}/genline_client.egg-info/requires.txt").read().decode()
    assert f"{top}/genline_client/py.typed" in names and f"{top}/README.md" in names
    assert "Version: 0.1.0" in info
    assert requires.split() == ["httpx>=0.24"]


def test_genline_submit_without_the_client_says_how_to_install_it_in_one_line():
    # Given a Python where genline_client cannot be imported
    code = ("import sys; sys.modules['genline_client'] = None; from pipeline.cli import main; "
            "sys.exit(main(['submit', 'a prompt', '--key', 'k']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=services.ROOT, capture_output=True, text=True, timeout=60)
    # Then the command says what to install, in one line, and exits 2
    assert done.returncode == 2
    assert done.stderr.strip() == "genline submit needs the Python client: pip install -e ./clients/python"
