"""The Python client (clients/python, genline_client) against a live genline over real HTTP:
gunicorn, a Celery worker, Postgres and Redis; proxies on 127.0.0.1 cut streams and answer 429."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest

from pipeline.adapters.webhooks import derived_secret
from tests import services
from tests.netproxy import ScriptedProxy, TcpProxy
from tests.test_webhooks import Receiver

try:
    import genline_client  # noqa: F401
except ImportError:  # make install installs it (pip install -e ./clients/python)
    message = "genline_client is not installed: pip install -e ./clients/python"
    pytest.fail(message, pytrace=False) if services.IN_CI else pytest.skip(message, allow_module_level=True)

from genline_client import (  # noqa: E402
    ApiError,
    AsyncGenline,
    Budget,
    ConnectionFailed,
    Genline,
    JobCanceled,
    JobFailed,
    RateLimited,
    WaitTimeout,
    WebhookVerificationError,
)

SMALL = {"size": "32x32"}
SLOW = {"size": "32x32", "params": {"simulate": {"latency_s": 3}}}


@pytest.fixture(scope="module")
def api_url(stack, log_dir):
    """A real HTTP server (gunicorn, gevent) on the shared stack."""
    proc, url = services.start_gunicorn(stack.env, log_dir)
    yield url
    proc.stop()


@pytest.fixture
def key(stack) -> str:
    """A fresh tenant's API key, so each test sees only its own jobs."""
    return stack.new_tenant("client")["Authorization"].split(" ", 1)[1]


@pytest.fixture
def client(api_url, key):
    with Genline(api_key=key, base_url=api_url) as c:
        yield c


def test_run_completes_with_every_event_once_in_order(client, stack):
    # Given a client; When it runs a job to the end, watching updates
    seen = []
    job = client.run("a lighthouse", size="32x32", seed=7, timeout=60, on_update=seen.append)

    # Then it returns the completed job with its output, and saw the whole event log once, in order
    assert job.status == "completed" and job.terminal
    assert job.outputs[0].width == 32 and job.outputs[0].media_type == "image/png"
    assert job.params["seed"] == 7 and job.timing.total_s is not None
    assert [e.id for e in seen] == [e["id"] for e in stack.events(job.id)]
    assert seen[-1].type == "completed"


def test_a_failed_job_raises_job_failed_with_its_error_code(client):
    # Given a job whose provider fails every attempt, with one attempt allowed by its budget
    with pytest.raises(JobFailed) as caught:
        client.run("fails", params={"size": "32x32", "simulate": {"fail_attempts": 5}},
                   budget=Budget(max_attempts=1), timeout=60)
    # Then the error carries the job's code and the failed job
    assert caught.value.code == "provider_error"
    assert caught.value.job.status == "failed" and caught.value.job.budget.max_attempts == 1


def test_cancel_while_waiting_raises_job_canceled_and_retry_resumes(client):
    # Given a slow job being waited for
    job = client.jobs.create("slow", **SLOW)

    def cancel_on_progress(event):
        if event.type == "progress":
            client.jobs.cancel(job.id)

    # When it is canceled from the update callback, Then the wait ends with JobCanceled
    with pytest.raises(JobCanceled) as caught:
        client.jobs.wait(job.id, timeout=60, on_update=cancel_on_progress)
    assert caught.value.job.status == "canceled" and caught.value.code == "canceled"

    # And a second cancel is a typed 409; a retry resumes it to completion
    with pytest.raises(ApiError) as conflict:
        client.jobs.cancel(job.id)
    assert conflict.value.status == 409 and conflict.value.code == "conflict"
    assert client.jobs.retry(job.id).status == "queued"
    assert client.jobs.wait(job.id, timeout=60).status == "completed"


def test_the_clients_wait_times_out_without_touching_the_job_unless_asked(client):
    # Given a job that takes 3 s
    job = client.jobs.create("slow", **SLOW)

    # When the client waits 1 s
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        client.jobs.wait(job, timeout=1)
    elapsed = time.monotonic() - started

    # Then WaitTimeout carries the job id, on time, and the job goes on
    assert caught.value.job_id == job.id and not caught.value.canceled
    assert 0.9 <= elapsed < 2.0, elapsed
    assert client.jobs.get(job.id).status in ("queued", "processing")
    assert client.jobs.wait(job.id, timeout=60).status == "completed"

    # And run() cancels the job it made when its wait runs out (cancel_on_timeout=True)
    with pytest.raises(WaitTimeout) as caught:
        client.run("slow too", timeout=1, **SLOW)
    assert caught.value.canceled
    assert client.jobs.get(caught.value.job_id).status == "canceled"


def test_a_stream_cut_midway_resumes_with_nothing_missed_or_doubled(stack, api_url, key):
    # Given a client that reaches genline through a TCP proxy
    proxy = TcpProxy(urlsplit(api_url).port).start()
    try:
        with Genline(api_key=key, base_url=proxy.url) as client:
            job = client.jobs.create("cut me", size="32x32", params={"simulate": {"latency_s": 4}})
            seen, cuts = [], []

            def on_update(event):
                seen.append(event)
                if event.type == "progress" and not cuts:
                    cuts.append(proxy.cut())  # When the stream's connection is dropped mid-way

            final = client.jobs.wait(job, timeout=60, on_update=on_update)

        # Then the wait completes, having seen each event of the log exactly once, in order
        assert final.status == "completed" and cuts and cuts[0] >= 1
        assert [e.id for e in seen] == [e["id"] for e in stack.events(job.id)]
        # And it long-polled and then resumed the stream with Last-Event-ID
        heads = proxy.heads
        assert any("wait=" in h.split("\r\n")[0] for h in heads), heads
        assert any("last-event-id:" in h.lower() for h in heads), heads
    finally:
        proxy.stop()


def test_jobs_stream_reopens_a_cut_stream_from_the_last_event(stack, api_url, key):
    # Given a stream read through a TCP proxy
    proxy = TcpProxy(urlsplit(api_url).port).start()
    try:
        with Genline(api_key=key, base_url=proxy.url) as client:
            job = client.jobs.create("stream me", size="32x32", params={"simulate": {"latency_s": 3}})
            seen = []
            for event in client.jobs.stream(job.id):
                seen.append(event)
                if len(seen) == 2:
                    proxy.cut()  # When its connection drops after the second event
        # Then the iterator went on from there: the whole log, once each, ending with completed
        assert [e.id for e in seen] == [e["id"] for e in stack.events(job.id)]
        assert seen[-1].type == "completed"
        # (from the second event or later: events already in the socket's buffer are still delivered)
        resumed = [int(line.split(":", 1)[1]) for h in proxy.heads for line in h.split("\r\n")
                   if line.lower().startswith("last-event-id:")]
        assert resumed and resumed[0] >= 2, proxy.heads
    finally:
        proxy.stop()


def test_a_429_is_retried_after_retry_after_with_the_same_idempotency_key(api_url, key):
    # Given a proxy that lets the first POST through to genline but answers the client 429 (Retry-After: 1)
    proxy = ScriptedProxy(api_url, [{"status": 429, "headers": {"Retry-After": "1"}, "forward": True}]).start()
    try:
        with Genline(api_key=key, base_url=proxy.url) as client:
            started = time.monotonic()
            job = client.jobs.create("once only", **SMALL)
            elapsed = time.monotonic() - started
        # Then the client waited as told and sent the same key again, and genline made one job
        posts = [r for r in proxy.seen if r["method"] == "POST"]
        assert len(posts) == 2 and elapsed >= 1.0
        keys = {r["headers"]["Idempotency-Key"] for r in posts}
        assert len(keys) == 1 and next(iter(keys)).startswith("genline-py-")
        assert json.loads(posts[0]["upstream"][1])["id"] == job.id
        with Genline(api_key=key, base_url=api_url) as direct:
            assert [j.id for j in direct.jobs.list()] == [job.id]
    finally:
        proxy.stop()


def test_5xx_is_retried_with_the_same_idempotency_key_and_one_job_is_made(api_url, key):
    # Given a proxy whose first POST reaches genline but is answered 503, and whose second is answered 502
    script = [{"status": 503, "headers": {"Retry-After": "0"}, "forward": True}, {"status": 502}]
    proxy = ScriptedProxy(api_url, script).start()
    try:
        with Genline(api_key=key, base_url=proxy.url) as client:
            job = client.jobs.create("after a server error", **SMALL)
        # Then the client tried three times with one key, and genline made one job, the one returned
        posts = [r for r in proxy.seen if r["method"] == "POST"]
        assert len(posts) == 3 and len({r["headers"]["Idempotency-Key"] for r in posts}) == 1
        assert json.loads(posts[0]["upstream"][1])["id"] == job.id
        with Genline(api_key=key, base_url=api_url) as direct:
            assert [j.id for j in direct.jobs.list()] == [job.id]
    finally:
        proxy.stop()


def test_a_server_that_never_answers_the_connection_is_a_typed_error():
    # Given a port nothing listens on
    url = f"http://127.0.0.1:{services.free_port()}"
    # When a call is made there, Then after its retries it raises ConnectionFailed naming the URL
    with Genline(api_key="gl_nobody", base_url=url, max_retries=1) as client, pytest.raises(ConnectionFailed) as caught:
        client.jobs.get("job_01m84b0000000000000000000")
    assert url in str(caught.value)


def test_4xx_is_never_retried_and_keeps_code_and_fields(api_url, key):
    proxy = ScriptedProxy(api_url).start()
    try:
        with Genline(api_key=key, base_url=proxy.url) as client, pytest.raises(ApiError) as caught:
            client.jobs.create("bad size", size="huge")
        assert caught.value.status == 422 and caught.value.code == "invalid_input"
        assert "params.size" in caught.value.fields
        assert len(proxy.seen) == 1
    finally:
        proxy.stop()


def test_rate_limited_after_every_retry_is_typed(api_url, key):
    # Given a proxy that answers 429 every time
    script = [{"status": 429, "headers": {"Retry-After": "0"}}] * 3
    proxy = ScriptedProxy(api_url, script).start()
    try:
        with Genline(api_key=key, base_url=proxy.url, max_retries=2) as client, pytest.raises(RateLimited) as caught:
            client.jobs.create("never", **SMALL)
        assert len(proxy.seen) == 3 and caught.value.retry_after == 0
        assert caught.value.idempotency_key == proxy.seen[0]["headers"]["Idempotency-Key"]
    finally:
        proxy.stop()


def test_webhook_of_a_real_delivery_verifies_and_a_tampered_one_does_not(client, stack):
    # Given a receiver and a job that sends its completed event there
    receiver = Receiver().start()
    try:
        job = client.run("hooked", timeout=60, webhook={"url": receiver.url, "events": ["completed"]}, **SMALL)
        services.wait_for(lambda: receiver.requests, 30, "the webhook delivery")
        delivery = receiver.requests[0]
    finally:
        receiver.stop()
    secret = derived_secret(stack.env["SECRET_KEY"])

    # When the receiver verifies it with the deployment's secret, Then it is genuine and typed
    message = client.webhooks.verify(delivery["body"], delivery["headers"], secret)
    assert message.type == "job.completed" and message.job.id == job.id and message.event.type == "completed"

    # And a changed body, a wrong secret or an old timestamp is refused
    with pytest.raises(WebhookVerificationError):
        client.webhooks.verify(delivery["body"].replace(b"completed", b"failed"), delivery["headers"], secret)
    with pytest.raises(WebhookVerificationError):
        client.webhooks.verify(delivery["body"], delivery["headers"], "whsec_" + "QUJD" * 8)
    with pytest.raises(WebhookVerificationError):
        client.webhooks.verify(delivery["body"], delivery["headers"], secret, now=time.time() + 3600)


def test_list_pages_and_cancel_many(client):
    # Given three jobs of this tenant, two of them slow
    made = [client.jobs.create("quick", **SMALL).id] + [client.jobs.create("slow", **SLOW).id for _ in range(2)]

    # When two slow ones are bulk-canceled, Then those two are canceled
    result = client.jobs.cancel_many(ids=made[1:])
    assert result.canceled == 2 and {j.status for j in result.data} == {"canceled"}

    # And listing two a page gives two pages, newest first, every job once
    pages = list(client.jobs.list(limit=2).pages())
    assert [len(p.data) for p in pages] == [2, 1] and pages[-1].next_cursor is None
    assert [j.id for j in client.jobs.list(limit=2)] == made[::-1]
    assert [j.id for j in client.jobs.list(status="canceled")] == made[:0:-1]


def test_a_holder_of_only_the_token_urls_can_wait_and_stream(client, api_url):
    # Given a job created with the key, and a client with no key (like a browser)
    job = client.jobs.create("token only", **SMALL)
    with Genline(api_key="", base_url=api_url) as anonymous:
        # When it waits and streams through the job's token URLs, Then both work without the key
        assert anonymous.jobs.wait(job, timeout=60).status == "completed"
        assert [e.type for e in anonymous.jobs.stream(job)][-1] == "completed"
        # And a long-poll through the token URL holds until a slow job ends
        slow = client.jobs.create("slow, token only", **SLOW)
        assert anonymous.jobs.get(slow, wait=30).status == "completed"
        # And a bare id without a key is refused, typed
        with pytest.raises(ApiError) as caught:
            anonymous.jobs.get(job.id)
        assert caught.value.status == 401


def test_async_client_runs_streams_and_times_out(api_url, key):
    async def scenario():
        async with AsyncGenline(api_key=key, base_url=api_url) as client:
            updates = []
            job = await client.run("async", timeout=60, on_update=updates.append, **SMALL)
            streamed = [e async for e in client.jobs.stream(job.id, last_event_id=1)]
            slow = await client.jobs.create("slow", **SLOW)
            started = time.monotonic()
            with pytest.raises(WaitTimeout) as caught:
                await client.jobs.wait(slow.id, timeout=1, cancel_on_timeout=True)
            listed = [j.id async for j in client.jobs.list()]
            return job, updates, streamed, caught.value, time.monotonic() - started, listed, slow

    job, updates, streamed, timeout, elapsed, listed, slow = asyncio.run(scenario())
    assert job.status == "completed" and updates[-1].type == "completed"
    assert [e.id for e in streamed] == [e.id for e in updates][1:]
    assert timeout.job_id == slow.id and timeout.canceled and elapsed < 2.0
    assert listed == [slow.id, job.id]


def test_genline_submit_uses_the_client(api_url, key):
    # Given the CLI pointed at the server; When it submits and waits
    env = {**os.environ, "GENLINE_URL": api_url, "GENLINE_API_KEY": key}
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "submit", "from the cli", "--size", "32x32",
                           "--wait"], env=env, capture_output=True, text=True, timeout=120, cwd=services.ROOT)
    # Then it prints the completed job
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"
    # And a bad request is one clear line and exit 1
    bad = subprocess.run([sys.executable, "-m", "pipeline.cli", "submit", "x", "--size", "huge"], env=env,
                         capture_output=True, text=True, timeout=60, cwd=services.ROOT)
    assert bad.returncode == 1 and "invalid_input" in bad.stderr and "Traceback" not in bad.stderr


def test_an_uploaded_image_is_edited(client, tmp_path):
    # Given an image uploaded from a file
    from PIL import Image

    from tests.images import png_bytes
    path = tmp_path / "in.png"
    path.write_bytes(png_bytes(Image.new("RGB", (48, 32), "teal")))
    upload = client.uploads.create(path)
    assert upload.id.startswith("upl_") and (upload.width, upload.height) == (48, 32)

    # When an edit job names it, Then it completes with an output of the input's size
    job = client.run("make it warmer", operation="edit", images=[upload.id], timeout=60)
    assert job.inputs["images"] == [upload.id] and (job.outputs[0].width, job.outputs[0].height) == (48, 32)
