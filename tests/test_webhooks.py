"""Webhooks against a real HTTP receiver on 127.0.0.1: signatures, retries, the delivery log, SSRF."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import delete, update

from pipeline.config import Config
from pipeline.store.models import Job, WebhookDelivery, db, utcnow
from pipeline.worker import webhook_tasks
from tests import services
from tests.conftest import private_stack

SECRET = "whsec_" + base64.b64encode(b"a test secret of thirty-two bytes").decode()


def verify(secret: str, headers: dict, body: bytes) -> bool:
    """Standard Webhooks verification written here from the spec, not imported from genline."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [s.split(",", 1)[1] for s in headers["webhook-signature"].split(" ") if s.startswith("v1,")]
    return any(hmac.compare_digest(expected, o) for o in offered)


class Receiver:
    """A webhook receiver: records every request; answers from a list of status codes (then 200)."""

    def __init__(self, port: int | None = None, statuses=()):
        self.port = port or services.free_port()
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/genline"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                          "body": body, "at": time.time()})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture(scope="module")
def hook_stack(pg_database, tmp_path_factory, log_dir):
    """A stack whose webhook retries come quickly (base 0.3 s) and whose secret is known."""
    with private_stack(tmp_path_factory.mktemp("hooks"), log_dir, worker={"concurrency": 2, "name": "hooks"},
                       GENLINE_WEBHOOK_RETRY_BASE_S="0.3", GENLINE_WEBHOOK_SECRET=SECRET,
                       GENLINE_WEBHOOK_TIMEOUT_S="3") as stack:
        yield stack


def delivery_log(stack, headers, job_id) -> list[dict]:
    response = stack.client.get(f"/v1/jobs/{job_id}/webhooks", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["data"]


def wait_until(predicate, timeout=30, what="condition"):
    return services.wait_for(predicate, timeout, what, 0.05)


def test_a_delivery_is_signed_and_verifies_independently(hook_stack):
    # Given a receiver and a job with a webhook for its terminal events
    receiver = Receiver().start()
    tenant = hook_stack.new_tenant()
    try:
        job = hook_stack.submit(tenant, {"prompt": "signed", "params": {"size": "16x16"},
                                         "webhook": {"url": receiver.url, "events": ["completed", "failed"]}})
        hook_stack.wait(tenant, job["id"])

        # When the delivery arrives
        wait_until(lambda: receiver.requests, what="the webhook")
        request = receiver.requests[0]
        body = json.loads(request["body"])

        # Then its Standard Webhooks signature verifies with the configured secret, and not with another
        assert verify(SECRET, request["headers"], request["body"])
        assert not verify("whsec_" + base64.b64encode(b"some other secret").decode(), request["headers"], request["body"])
        assert abs(int(request["headers"]["webhook-timestamp"]) - time.time()) < 300
        assert request["headers"]["content-type"] == "application/json"
        assert body["type"] == "job.completed"
        assert body["data"]["job"]["id"] == job["id"] and body["data"]["job"]["status"] == "completed"
        assert body["data"]["event"]["type"] == "completed"
        # And the delivery log holds the one successful attempt
        log = wait_until(lambda: delivery_log(hook_stack, tenant, job["id"]), what="the delivery log")
        assert [(d["attempt"], d["status_code"], d["delivered"]) for d in log] == [(1, 200, True)]
        assert log[0]["message_id"] == request["headers"]["webhook-id"]
    finally:
        receiver.stop()


def test_receiver_down_then_failing_then_up_is_delivered_after_retries(hook_stack):
    # Given a webhook URL where nothing listens yet
    receiver = Receiver(statuses=[503])
    tenant = hook_stack.new_tenant()
    job = hook_stack.submit(tenant, {"prompt": "retried", "params": {"size": "16x16"},
                                     "webhook": {"url": receiver.url, "events": ["completed"]}})
    done = hook_stack.wait(tenant, job["id"])
    try:
        # When the first attempt was refused, the receiver comes up (answering 503 once, then 200)
        wait_until(lambda: delivery_log(hook_stack, tenant, job["id"]), what="a first failed attempt")
        receiver.start()
        log = wait_until(lambda: [d for d in delivery_log(hook_stack, tenant, job["id"]) if d["delivered"]] and
                         delivery_log(hook_stack, tenant, job["id"]), timeout=60, what="a delivered attempt")

        # Then it was delivered after retries, and every attempt is in the log, in order
        assert [d["attempt"] for d in log] == list(range(1, len(log) + 1))
        assert log[0]["status_code"] is None and log[0]["error"] and not log[0]["delivered"]
        assert any(d["status_code"] == 503 and not d["delivered"] for d in log)
        assert log[-1]["delivered"] and log[-1]["status_code"] == 200
        assert len({d["message_id"] for d in log}) == 1
        assert all(d["next_attempt_at"] is None for d in log)
        # And the receiver saw one webhook-id, correctly signed on every try
        assert {r["headers"]["webhook-id"] for r in receiver.requests} == {log[0]["message_id"]}
        assert all(verify(SECRET, r["headers"], r["body"]) for r in receiver.requests)
        # And delivery never changed the job
        after = hook_stack.job(tenant, job["id"])
        assert (after["status"], after["completed_at"]) == (done["status"], done["completed_at"])
    finally:
        receiver.stop()


def test_redeliver_sends_the_last_event_again(hook_stack):
    receiver = Receiver().start()
    tenant = hook_stack.new_tenant()
    try:
        job = hook_stack.submit(tenant, {"prompt": "again", "params": {"size": "16x16"},
                                         "webhook": {"url": receiver.url, "events": ["completed"]}})
        hook_stack.wait(tenant, job["id"])
        wait_until(lambda: len(receiver.requests) == 1, what="the first delivery")

        # When the tenant asks for a redelivery
        response = hook_stack.client.post(f"/v1/jobs/{job['id']}/webhooks/redeliver", headers=tenant)

        # Then the same message (same webhook-id) arrives again, as a second attempt in the log
        assert response.status_code == 202, response.get_data(as_text=True)
        assert response.get_json()["event"]["type"] == "completed"
        wait_until(lambda: len(receiver.requests) == 2, what="the redelivery")
        ids = [r["headers"]["webhook-id"] for r in receiver.requests]
        assert ids[0] == ids[1] == response.get_json()["message_id"]
        log = wait_until(lambda: len(delivery_log(hook_stack, tenant, job["id"])) == 2 and
                         delivery_log(hook_stack, tenant, job["id"]), what="two attempts logged")
        assert [d["attempt"] for d in log] == [1, 2] and all(d["delivered"] for d in log)
    finally:
        receiver.stop()


def test_redeliver_without_a_webhook_is_409_and_other_tenants_get_404(hook_stack):
    tenant, other = hook_stack.new_tenant(), hook_stack.new_tenant()
    job = hook_stack.submit(tenant, {"prompt": "no hook", "params": {"size": "16x16"}})
    assert hook_stack.client.post(f"/v1/jobs/{job['id']}/webhooks/redeliver", headers=tenant).status_code == 409
    assert hook_stack.client.get(f"/v1/jobs/{job['id']}/webhooks", headers=other).status_code == 404


def test_progress_events_are_delivered_when_subscribed(hook_stack):
    # Given a webhook that subscribed to started and completed
    receiver = Receiver().start()
    tenant = hook_stack.new_tenant()
    try:
        job = hook_stack.submit(tenant, {"prompt": "every step", "params": {"size": "16x16"},
                                         "webhook": {"url": receiver.url, "events": ["started", "completed"]}})
        hook_stack.wait(tenant, job["id"])
        # Then one delivery per started step and one for completed arrive, each signed
        wait_until(lambda: len(receiver.requests) >= 4, what="four deliveries")
        services.assert_stays(lambda: len(receiver.requests) == 4, 0.5, "no fifth delivery")
        types = sorted(json.loads(r["body"])["type"] for r in receiver.requests)
        assert types == ["job.completed", "job.started", "job.started", "job.started"]
        assert all(verify(SECRET, r["headers"], r["body"]) for r in receiver.requests)
    finally:
        receiver.stop()


def test_a_tenant_secret_overrides_the_deployment_secret(hook_stack):
    from pipeline.store.models import Tenant, db
    receiver = Receiver().start()
    tenant = hook_stack.new_tenant()
    own = "whsec_" + base64.b64encode(b"the tenant's own secret").decode()
    with hook_stack.app.app_context():
        db.session.get(Tenant, tenant["X-Tenant"]).webhook_secret = own
        db.session.commit()
    try:
        job = hook_stack.submit(tenant, {"prompt": "own secret", "params": {"size": "16x16"},
                                         "webhook": {"url": receiver.url, "events": ["completed"]}})
        hook_stack.wait(tenant, job["id"])
        wait_until(lambda: receiver.requests, what="the webhook")
        assert verify(own, receiver.requests[0]["headers"], receiver.requests[0]["body"])
        assert not verify(SECRET, receiver.requests[0]["headers"], receiver.requests[0]["body"])
    finally:
        receiver.stop()


def test_without_a_configured_secret_the_cli_shows_the_derived_one(stack, tenant):
    # Given the shared stack, which sets no GENLINE_WEBHOOK_SECRET
    receiver = Receiver().start()
    try:
        job = stack.submit(tenant, {"prompt": "derived", "params": {"size": "16x16"},
                                    "webhook": {"url": receiver.url, "events": ["completed"]}})
        stack.wait(tenant, job["id"])
        wait_until(lambda: receiver.requests, what="the webhook")

        # When the operator asks the CLI for the secret
        shown = subprocess.run([sys.executable, "-m", "pipeline.cli", "webhooks", "secret"], env=stack.env,
                               cwd=services.ROOT, capture_output=True, text=True, timeout=60)

        # Then it is a whsec_ secret that verifies the delivery
        secret = shown.stdout.strip()
        assert shown.returncode == 0, shown.stderr
        assert secret.startswith("whsec_")
        assert verify(secret, receiver.requests[0]["headers"], receiver.requests[0]["body"])
    finally:
        receiver.stop()


REFUSED = [
    "http://127.0.0.1:8080/hook",
    "http://10.1.2.3/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://localhost:9000/hook",  # a hostname whose DNS answer is a loopback address
    "http://[::1]/hook",
    "http://192.168.0.10/hook",
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "http://user:pass@example.com/hook",
]


@pytest.mark.parametrize("url", REFUSED)
def test_webhook_urls_into_private_networks_are_refused_at_submit(stack, tenant, url):
    # Given a deployment that does not allow private webhook addresses
    from web import create_app
    strict = create_app(Config.from_env({**stack.env, "GENLINE_WEBHOOK_ALLOW_PRIVATE": "0"}))

    # When a job names such a URL
    response = strict.test_client().post("/v1/jobs", headers=tenant, json={
        "prompt": "ssrf", "params": {"size": "16x16"}, "webhook": {"url": url}})

    # Then it is a 422 naming webhook.url, and no job was made
    assert response.status_code == 422, response.get_data(as_text=True)
    body = response.get_json()["error"]
    assert body["code"] == "invalid_input" and "webhook.url" in body["fields"]
    listed = stack.client.get("/v1/jobs?limit=100", headers=tenant).get_json()["data"]
    assert not [j for j in listed if j["prompt"] == "ssrf"]


def test_send_time_check_refuses_a_url_that_now_points_inside(stack):
    # Given a receiver on 127.0.0.1 and a deployment that does not allow private addresses
    from pipeline.adapters import webhooks
    receiver = Receiver().start()
    cfg = Config.from_env({**stack.env, "GENLINE_WEBHOOK_ALLOW_PRIVATE": "0"})
    try:
        # When a delivery is attempted (its URL passed at submit, but resolves inside now)
        outcome = webhooks.post(f"http://localhost:{receiver.port}/hook", "msg_x_1", b"{}", SECRET, cfg)

        # Then it is refused for good, without any request reaching the receiver
        assert not outcome.delivered and outcome.permanent
        assert "refused" in outcome.error
        assert receiver.requests == []
    finally:
        receiver.stop()


def test_a_retry_due_in_the_delivery_log_is_sent_by_the_sweep(hook_stack):
    # Given a delivered job whose log holds a failed attempt due for retry (as a long backoff leaves it)
    from datetime import timedelta

    from pipeline.store.models import WebhookDelivery, db, utcnow
    from pipeline.worker.webhook_tasks import sweep
    receiver = Receiver().start()
    tenant = hook_stack.new_tenant()
    try:
        job = hook_stack.submit(tenant, {"prompt": "swept", "params": {"size": "16x16"},
                                         "webhook": {"url": receiver.url, "events": ["completed"]}})
        hook_stack.wait(tenant, job["id"])
        wait_until(lambda: len(receiver.requests) == 1, what="the first delivery")
        first = wait_until(lambda: delivery_log(hook_stack, tenant, job["id"]), what="the log")[0]
        with hook_stack.app.app_context():
            db.session.add(WebhookDelivery(
                job_id=job["id"], message_id=first["message_id"], event_type="completed",
                event_seq=first["event_seq"], attempt=2, url=receiver.url, error="HTTP 502", delivered=False,
                next_attempt_at=utcnow() - timedelta(seconds=1)))
            db.session.commit()

            # When beat's sweep runs (twice: a second sweep must not send it again)
            assert sweep.run() == 1
            sweep.run()

        # Then the retry is delivered once, as the next attempt, and nothing is left due
        log = wait_until(lambda: len(delivery_log(hook_stack, tenant, job["id"])) == 3 and
                         delivery_log(hook_stack, tenant, job["id"]), what="the swept attempt")
        assert [(d["attempt"], d["delivered"]) for d in log] == [(1, True), (2, False), (3, True)]
        assert all(d["next_attempt_at"] is None for d in log)
        services.assert_stays(lambda: len(receiver.requests) == 2, 0.5, "no third delivery")
    finally:
        receiver.stop()


def test_a_terminal_event_whose_delivery_message_was_lost_is_sent_by_the_sweep(hook_stack):
    # Given a completed job whose terminal event has no delivery at all, as when the notify
    # step's message went with a Redis that restarted empty or failed over, ended a while ago
    receiver = Receiver().start()
    tenant = hook_stack.new_tenant()
    try:
        job = hook_stack.submit(tenant, {"prompt": "lost notify", "params": {"size": "16x16"},
                                         "webhook": {"url": receiver.url, "events": ["completed"]}})
        hook_stack.wait(tenant, job["id"])
        wait_until(lambda: delivery_log(hook_stack, tenant, job["id"]), what="the first delivery")
        with hook_stack.app.app_context():
            db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.job_id == job["id"]))
            db.session.execute(update(Job).where(Job.id == job["id"]).values(
                completed_at=utcnow() - timedelta(seconds=webhook_tasks.LOST_FIRST_SETTLE_S + 5)))
            db.session.commit()
        before = len(receiver.requests)

        # When the webhook sweep runs (beat sends it every 30 s; here at once, and again while
        # beat's own pass holds the sweep's lock: either pass may be the one that sends it)
        def swept():
            with hook_stack.app.app_context():
                # .run(): the task's body in this app's context; calling the task itself would
                # run it in the context of whichever app its Celery instance was made by.
                webhook_tasks.sweep.run()
            return delivery_log(hook_stack, tenant, job["id"])

        # Then that event is sent, once: later sweeps find its delivery and send nothing
        log = wait_until(swept, what="the recovered delivery")
        assert [(d["attempt"], d["delivered"], d["event_type"]) for d in log] == [(1, True, "completed")]
        assert len(receiver.requests) == before + 1
        with hook_stack.app.app_context():
            assert webhook_tasks._send_lost_first() == 0
    finally:
        receiver.stop()
