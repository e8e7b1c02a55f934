"""Jobs on the openai and http providers end to end: a private stack whose worker talks to
real HTTP servers on 127.0.0.1; timeouts, a hung server, failover and cancel."""
from __future__ import annotations

import io
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from PIL import Image

from tests import services
from tests.conftest import private_stack
from tests.fake_providers import TOKEN, ImageServer
from tests.images import open_image, png_bytes
from tests.services import instant


@pytest.fixture(scope="module", params=["all", "io"])
def kind(request) -> str:
    """The worker kind under test: one prefork worker on every queue, or the gevent I/O worker alone."""
    return request.param


@pytest.fixture(scope="module")
def server(kind):
    s = ImageServer().start()  # one per kind: tests count the requests it saw
    yield s
    s.stop()


@pytest.fixture(scope="module")
def remote_stack(kind, pg_database, server, tmp_path_factory, log_dir):
    """A stack whose worker (-c 1) has the openai and http providers pointed at ``server``.

    Run on both worker kinds that take remote generate (``kind``).
    """
    worker = {"concurrency": 1, "name": f"remote-{kind}", "kind": kind}
    with private_stack(tmp_path_factory.mktemp("remote"), log_dir, worker=worker,
                       OPENAI_API_KEY=TOKEN, OPENAI_BASE_URL=server.url + "/v1",
                       GENLINE_HTTP_PROVIDER_URL=server.url + "/infer", GENLINE_HTTP_PROVIDER_TOKEN=TOKEN) as stack:
        yield stack


def test_an_openai_job_completes_and_records_provider_and_model(remote_stack, server):
    headers = remote_stack.new_tenant()
    job = remote_stack.submit(headers, {"prompt": "openai e2e", "provider": "openai", "params": {"size": "1024x1024"}})
    done = remote_stack.wait(headers, job["id"])
    assert done["status"] == "completed", done["error"]
    assert (done["provider"], done["model"]) == ("openai", "gpt-image-1")
    assert (done["outputs"][0]["provider"], done["outputs"][0]["model"]) == ("openai", "gpt-image-1")
    assert len(server.seen("openai e2e")) == 1


def test_an_http_edit_gets_a_signed_url_of_its_uploaded_input(remote_stack, server):
    # Given an uploaded input image
    headers = remote_stack.new_tenant()
    source = png_bytes(Image.new("RGB", (30, 20), (1, 2, 3)))
    upload = remote_stack.client.post("/v1/uploads", headers=headers, data={"file": (io.BytesIO(source), "in.png")},
                                      content_type="multipart/form-data")
    assert upload.status_code == 201, upload.get_data(as_text=True)

    # When an edit runs on the http provider
    job = remote_stack.submit(headers, {"operation": "edit", "prompt": "http edit", "provider": "http",
                                        "inputs": {"images": [upload.get_json()["id"]]}})
    done = remote_stack.wait(headers, job["id"])

    # Then the endpoint was sent a signed, expiring URL that serves exactly the uploaded bytes
    assert done["status"] == "completed", done["error"]
    assert (done["provider"], done["model"]) == ("http", "fake-diffusion")
    [seen] = server.seen("http edit")
    [url] = seen["json"]["inputs"]
    assert "/files/" in url and upload.get_json()["id"] not in url
    fetched = remote_stack.client.get(urlsplit(url).path)
    assert fetched.status_code == 200 and fetched.data == source
    assert remote_stack.client.get(urlsplit(url).path + "x").status_code == 404  # a forged token is refused


def test_a_slow_provider_fails_with_timeout_after_max_attempts(remote_stack, server):
    headers = remote_stack.new_tenant()
    job = remote_stack.submit(headers, {"prompt": "slow:60 e2e", "provider": "openai",
                                        "budget": {"timeout_s": 1.5, "deadline_s": 40, "max_attempts": 2}})
    done = remote_stack.wait(headers, job["id"], timeout=40)
    assert done["status"] == "failed" and done["error"]["code"] == "timeout", done["error"]
    assert done["attempt"] == 2 and len(server.seen("slow:60 e2e")) == 2
    assert [e["type"] for e in remote_stack.events(job["id"])].count("retry") == 1


def test_a_hung_provider_still_ends_the_job_by_its_deadline(remote_stack, server):
    headers = remote_stack.new_tenant()
    job = remote_stack.submit(headers, {"prompt": "hang e2e", "provider": "http",
                                        "budget": {"timeout_s": 3, "deadline_s": 8, "max_attempts": 5}})
    done = remote_stack.wait(headers, job["id"], timeout=40)
    assert done["status"] == "failed" and done["error"]["code"] in ("timeout", "deadline_exceeded"), done["error"]
    assert instant(done["completed_at"]) <= instant(done["deadline_at"]) + timedelta(seconds=5)


def test_failover_from_a_failing_to_a_working_provider_within_one_job(remote_stack, server):
    # Given a job that names openai (answering 503) then http
    headers = remote_stack.new_tenant()
    job = remote_stack.submit(headers, {"prompt": "openai-status:503 failover", "provider": ["openai", "http"],
                                        "model": "gpt-image-1", "budget": {"max_attempts": 2, "deadline_s": 60}})

    # When it runs
    done = remote_stack.wait(headers, job["id"], timeout=60)

    # Then openai got its two attempts, http produced the image, and the job says so
    assert done["status"] == "completed", done["error"]
    paths = [r["path"] for r in server.seen("openai-status:503 failover")]
    assert paths == ["/v1/images/generations", "/v1/images/generations", "/infer"]
    assert (done["provider"], done["model"]) == ("http", "fake-diffusion")
    assert done["outputs"][0]["provider"] == "http"
    retries = [e["data"] for e in remote_stack.events(job["id"]) if e["type"] == "retry"]
    assert [r.get("provider") for r in retries] == [None, "http"]
    assert all(r["error"]["code"] == "provider_error" for r in retries)


def test_rate_limited_waits_for_retry_after(remote_stack, server):
    # Given a provider that answers 429 with Retry-After: 2
    headers = remote_stack.new_tenant()
    job = remote_stack.submit(headers, {"prompt": "status:429:retry=2 wait", "provider": "openai",
                                        "budget": {"max_attempts": 2, "deadline_s": 60}})
    done = remote_stack.wait(headers, job["id"], timeout=60)
    # Then the retry waited at least those 2 s, and the job ends rate_limited
    assert done["status"] == "failed" and done["error"]["code"] == "rate_limited"
    [retry] = [e["data"] for e in remote_stack.events(job["id"]) if e["type"] == "retry"]
    assert retry["delay_s"] >= 2 and retry["error"]["code"] == "rate_limited"
    times = [e["created_at"] for e in remote_stack.events(job["id"])
             if e["type"] == "started" and e["data"]["step"] == "generate"]
    assert instant(times[1]) - instant(times[0]) >= timedelta(seconds=2)


def test_a_retry_after_past_the_deadline_moves_to_the_next_provider(remote_stack, server):
    # Given openai asking to wait 600 s, more than the job's deadline, and http after it
    headers = remote_stack.new_tenant()
    job = remote_stack.submit(headers, {"prompt": "openai-status:429:retry=600 busy", "provider": ["openai", "http"],
                                        "budget": {"max_attempts": 3, "deadline_s": 60}})
    done = remote_stack.wait(headers, job["id"], timeout=60)
    # Then http is tried at once instead of waiting past the deadline
    assert done["status"] == "completed", done["error"]
    assert [r["path"] for r in server.seen("openai-status:429:retry=600 busy")] == ["/v1/images/generations", "/infer"]
    # and with no provider left, the same wait ends the job as deadline_exceeded without waiting
    alone = remote_stack.submit(headers, {"prompt": "openai-status:429:retry=600 alone", "provider": "openai",
                                          "budget": {"max_attempts": 3, "deadline_s": 60}})
    failed = remote_stack.wait(headers, alone["id"], timeout=30)
    assert failed["status"] == "failed" and failed["error"]["code"] == "deadline_exceeded"
    assert "rate_limited" in failed["error"]["message"]


def test_a_refusal_is_not_failed_over(remote_stack, server):
    # A prompt the first provider refuses as unsafe would be refused by the next too
    headers = remote_stack.new_tenant()
    job = remote_stack.submit(headers, {"prompt": "openai-status:400:code=moderation_blocked nope",
                                        "provider": ["openai", "http"]})
    done = remote_stack.wait(headers, job["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "unsafe_content"
    assert [r["path"] for r in server.seen("openai-status:400:code=moderation_blocked nope")] == ["/v1/images/generations"]


def test_cancel_abandons_the_provider_call_and_frees_the_worker(remote_stack, server):
    # Given a job hung in the http provider on the only worker slot
    headers = remote_stack.new_tenant()
    hung = remote_stack.submit(headers, {"prompt": "hang cancel", "provider": "http",
                                         "budget": {"timeout_s": 120, "deadline_s": 300}})
    services.wait_for(lambda: server.seen("hang cancel"), 30, "the provider call")

    # When it is canceled
    response = remote_stack.client.post(f"/v1/jobs/{hung['id']}/cancel", headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    canceled_at = time.monotonic()

    # Then the worker lets go of the call: the next job runs long before the hung one's 120 s
    nxt = remote_stack.submit(headers, {"prompt": "after cancel", "provider": "http"})
    done = remote_stack.wait(headers, nxt["id"], timeout=30)
    assert done["status"] == "completed", done["error"]
    assert time.monotonic() - canceled_at < 30
    assert remote_stack.job(headers, hung["id"])["status"] == "canceled"
    assert open_image(remote_stack.client.get(f"/v1/jobs/{nxt['id']}/outputs/0", headers=headers).data).size == (24, 16)


def _attempt_ms(stack, job_id: str) -> list[int]:
    """How long each failed generate attempt took, from the job's retry events and its error."""
    return [e["data"]["elapsed_ms"] for e in stack.events(job_id) if e["type"] == "retry"]


def test_a_provider_trickling_its_answer_is_cut_at_the_attempt_limit(remote_stack, server, kind):
    # Given a provider that answers at once but sends its body a byte every 0.2 s (no read ever times out)
    headers = remote_stack.new_tenant()
    prompt = f"trickle {kind}"
    job = remote_stack.submit(headers, {"prompt": prompt, "provider": "http",
                                        "budget": {"timeout_s": 2, "deadline_s": 60, "max_attempts": 2}})
    done = remote_stack.wait(headers, job["id"], timeout=40)

    # Then each attempt ends with timeout within 1 s of its 2 s limit: the limit bounds connect to last byte
    assert done["status"] == "failed" and done["error"]["code"] == "timeout", done["error"]
    [first] = _attempt_ms(remote_stack, job["id"])
    assert abs(first - 2000) <= 1000, first
    if kind == "io":
        # and on the I/O worker the connection is closed at once, not left to the provider
        seen = server.seen(prompt)
        services.wait_for(lambda: all("closed_at" in r for r in seen), 5, "the trickling calls to be closed")


# Only the I/O worker can close the call: a prefork worker abandons the call's thread, whose
# socket ends at its read timeout (docs/workers.md). So this one runs on the I/O kind alone.
@pytest.mark.parametrize("kind", ["io"], indirect=True, scope="module")
def test_on_the_io_worker_a_cancel_closes_the_providers_connection_within_a_second(remote_stack, server, kind):
    # Given a job hung in the http provider
    headers = remote_stack.new_tenant()
    hung = remote_stack.submit(headers, {"prompt": "hang close", "provider": "http",
                                         "budget": {"timeout_s": 120, "deadline_s": 300}})
    services.wait_for(lambda: server.seen("hang close"), 30, "the provider call")

    # When it is canceled
    canceled_at = time.monotonic()
    response = remote_stack.client.post(f"/v1/jobs/{hung['id']}/cancel", headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)

    # Then the provider sees the connection closed within a second
    [seen] = server.seen("hang close")
    services.wait_for(lambda: "closed_at" in seen, 5, "the hung call to be closed")
    assert seen["closed_at"] - canceled_at < 1.0, seen["closed_at"] - canceled_at
