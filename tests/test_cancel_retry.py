"""Cancel (one, bulk) and retry (resume from the step that did not finish), on real workers."""
from __future__ import annotations

import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests import services
from tests.services import wait_for

SMALL = {"size": "32x32"}


@pytest.fixture(scope="module", params=["all", "kinds"])
def stack(request, stack):
    """Each test on both worker layouts: one prefork worker on every queue (the session's
    ``stack``), and the compute + I/O worker kinds (``kinds_stack``, docs/workers.md)."""
    return stack if request.param == "all" else request.getfixturevalue("kinds_stack")


def post(stack, headers, path, body=None):
    return stack.client.post(path, headers=headers, json=body) if body is not None \
        else stack.client.post(path, headers=headers)


def events_of(stack, job_id, kind, step=None):
    return [e for e in stack.events(job_id) if e["type"] == kind and (step is None or e["data"].get("step") == step)]


def wait_until_generating(stack, headers, job_id):
    wait_for(lambda: events_of(stack, job_id, "started", "generate"), 30, "generate to start")
    wait_for(lambda: events_of(stack, job_id, "progress"), 30, "a progress event")


def test_cancel_while_generating_stops_the_attempt_and_never_completes(stack, tenant):
    # Given a job in the middle of a 20 s generation
    job = stack.submit(tenant, {"prompt": "long", "params": {**SMALL, "simulate": {"latency_s": 20}}})
    wait_until_generating(stack, tenant, job["id"])
    worker = stack.processes[0]
    # When it is canceled
    response = post(stack, tenant, f"/v1/jobs/{job['id']}/cancel")
    # Then the answer is 202 with the job canceled at once
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == "canceled" and body["error"]["code"] == "canceled"
    # And the running attempt stops within a couple of seconds
    worker.wait_for_log(f"step stopped job_id={job['id']}", timeout=5)
    services.assert_stays(lambda: stack.job(tenant, job["id"])["status"] == "canceled", 1, "the job canceled")
    types = [e["type"] for e in stack.events(job["id"])]
    assert types.count("canceled") == 1 and "completed" not in types and types[-1] == "canceled"


def test_double_cancel_and_cancel_of_a_completed_job_answer_409(stack, tenant):
    # Given a running job, canceled once
    running = stack.submit(tenant, {"prompt": "x", "params": {**SMALL, "simulate": {"latency_s": 10}}})
    assert post(stack, tenant, f"/v1/jobs/{running['id']}/cancel").status_code == 202
    # When it is canceled again, Then 409 naming its status
    again = post(stack, tenant, f"/v1/jobs/{running['id']}/cancel")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "conflict"
    assert "canceled" in again.get_json()["error"]["message"]
    # Given a completed job, When it is canceled, Then 409 and it stays completed
    done = stack.wait(tenant, stack.submit(tenant, {"prompt": "quick", "params": SMALL})["id"])
    assert done["status"] == "completed"
    response = post(stack, tenant, f"/v1/jobs/{done['id']}/cancel")
    assert response.status_code == 409
    assert stack.job(tenant, done["id"])["status"] == "completed"
    # And retrying a completed job is 409 too, an unknown or foreign job 404
    assert post(stack, tenant, f"/v1/jobs/{done['id']}/retry").status_code == 409
    assert post(stack, tenant, "/v1/jobs/job_doesnotexist/cancel").status_code == 404
    other = stack.new_tenant()
    assert post(stack, other, f"/v1/jobs/{done['id']}/retry").status_code == 404


def test_retry_of_a_canceled_generation_resumes_without_validating_again(stack, tenant):
    # Given a job canceled during generate
    job = stack.submit(tenant, {"prompt": "resume me", "params": {**SMALL, "simulate": {"latency_s": 2}}})
    wait_until_generating(stack, tenant, job["id"])
    assert post(stack, tenant, f"/v1/jobs/{job['id']}/cancel").status_code == 202
    # When it is retried
    response = post(stack, tenant, f"/v1/jobs/{job['id']}/retry")
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["status"] == "queued" and response.get_json()["step"] == "generate"
    # Then it completes from generate: validate ran once, generate twice
    done = stack.wait(tenant, job["id"], timeout=45)
    assert done["status"] == "completed", done["error"]
    assert len(events_of(stack, job["id"], "started", "validate")) == 1
    assert len(events_of(stack, job["id"], "started", "generate")) == 2
    assert [e["type"] for e in stack.events(job["id"])].count("completed") == 1


def test_bulk_cancel_by_ids_status_and_created_before(stack, tenant):
    # Given three running jobs of this tenant and one of another tenant
    body = {"prompt": "bulk", "params": {**SMALL, "simulate": {"latency_s": 15}}}
    a, b, c = (stack.submit(tenant, body) for _ in range(3))
    other = stack.new_tenant()
    foreign = stack.submit(other, body)
    # When the tenant cancels by ids (one of which is the other tenant's)
    response = post(stack, tenant, "/v1/jobs/cancel", {"ids": [a["id"], foreign["id"]]})
    # Then only its own job is canceled
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["canceled"] == 1 and response.get_json()["data"][0]["id"] == a["id"]
    # When it cancels everything queued or processing created before now
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1))
    response = post(stack, tenant, "/v1/jobs/cancel", {"status": ["queued", "processing"], "created_before": now})
    assert sorted(j["id"] for j in response.get_json()["data"]) == sorted([b["id"], c["id"]])
    for j in (a, b, c):
        assert stack.job(tenant, j["id"])["status"] == "canceled"
    # And the other tenant's job was untouched
    assert stack.job(other, foreign["id"])["status"] in ("queued", "processing")
    post(stack, other, f"/v1/jobs/{foreign['id']}/cancel")
    # And a bulk cancel without any filter is refused
    refused = post(stack, tenant, "/v1/jobs/cancel", {})
    assert refused.status_code == 422 and refused.get_json()["error"]["code"] == "invalid_input"


def _deadline_passes(stack, job_id: str) -> None:
    """The job's deadline passes: its row's deadline is moved into the past rather than waited for."""
    from sqlalchemy import update

    from pipeline.store.models import Job, db, utcnow
    with stack.app.app_context():
        db.session.execute(update(Job).where(Job.id == job_id).values(deadline_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        row = db.session.get(Job, job_id)
        assert row is not None and row.deadline_at < utcnow()


def test_queued_jobs_canceled_or_past_their_deadline_never_run(make_stack):
    # Given a stack with no worker yet, a queued job canceled and one whose deadline passes in the queue
    stack = make_stack()
    headers = stack.new_tenant()
    canceled = stack.submit(headers, {"prompt": "never", "params": SMALL})
    late = stack.submit(headers, {"prompt": "late", "params": SMALL, "budget": {"deadline_s": 1, "timeout_s": 1}})
    response = post(stack, headers, f"/v1/jobs/{canceled['id']}/cancel")
    assert response.status_code == 202 and response.get_json()["status"] == "canceled"
    _deadline_passes(stack, late["id"])
    # When a worker starts and receives both messages
    stack.start_worker(concurrency=1, name="late")
    # Then the late job fails with deadline_exceeded without running, the canceled one stays canceled
    done = stack.wait(headers, late["id"], timeout=30)
    assert done["status"] == "failed" and done["error"]["code"] == "deadline_exceeded"
    assert not events_of(stack, late["id"], "started")
    services.assert_stays(lambda: stack.job(headers, canceled["id"])["status"] == "canceled"
                          and not events_of(stack, canceled["id"], "started"), 1, "the canceled job never started")


def test_upload_failure_is_retried_without_generating_again_and_cancel_while_uploading(make_stack, tmp_path):
    # Given a file storage whose root is blocked by a plain file, so every upload fails (even as root)
    root = tmp_path / "blocked-storage"
    root.write_text("not a directory")
    stack = make_stack(STORAGE_URL=root.as_uri())
    stack.start_worker(concurrency=2, name="upload")
    headers = stack.new_tenant()
    failing = stack.submit(headers, {"prompt": "upload fails", "params": SMALL})
    uploading = stack.submit(headers, {"prompt": "cancel me in upload", "params": SMALL})
    # When the second job is canceled while its upload is between tries
    wait_for(lambda: stack.job(headers, uploading["id"])["step"] == "upload", 30, "the upload step", 0.02)
    assert post(stack, headers, f"/v1/jobs/{uploading['id']}/cancel").status_code == 202
    # Then the first fails with storage_error after its upload tries
    failed = stack.wait(headers, failing["id"], timeout=45)
    assert failed["status"] == "failed" and failed["error"]["code"] == "storage_error"
    assert failed["error"]["step"] == "upload" and failed["outputs"] is None
    # When the storage works again
    root.unlink()
    Path(root).mkdir()
    # Then the canceled job never completes behind our back
    services.assert_stays(lambda: stack.job(headers, uploading["id"])["status"] == "canceled"
                          and not events_of(stack, uploading["id"], "completed"), 2, "the canceled upload stays canceled")
    # When both are retried
    for job in (failing, uploading):
        response = post(stack, headers, f"/v1/jobs/{job['id']}/retry")
        assert response.status_code == 202 and response.get_json()["step"] == "upload"
    # Then both complete from upload, the provider having run once per job
    for job in (failing, uploading):
        done = stack.wait(headers, job["id"], timeout=45)
        assert done["status"] == "completed", done["error"]
        assert len(events_of(stack, job["id"], "started", "generate")) == 1
        assert (root / "outputs" / job["id"]).is_dir()
    shutil.rmtree(root, ignore_errors=True)


def test_idempotency_key_returns_the_same_job_and_refuses_another_body(stack, tenant):
    # Given a job submitted with an Idempotency-Key
    body = {"prompt": "once", "params": SMALL}
    first = stack.client.post("/v1/jobs", json=body, headers={**tenant, "Idempotency-Key": "k-1"})
    assert first.status_code == 202
    # When the same key and body are sent again, Then the same job comes back with 200
    again = stack.client.post("/v1/jobs", json=body, headers={**tenant, "Idempotency-Key": "k-1"})
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    # When the same key comes with another body, Then 409 and no new job
    other = stack.client.post("/v1/jobs", json={"prompt": "twice", "params": SMALL},
                              headers={**tenant, "Idempotency-Key": "k-1"})
    assert other.status_code == 409 and other.get_json()["error"]["code"] == "conflict"
    listed = stack.client.get("/v1/jobs", headers=tenant).get_json()["data"]
    assert [j["id"] for j in listed] == [first.get_json()["id"]]
    # And another tenant's same key is its own
    stranger = stack.new_tenant()
    theirs = stack.client.post("/v1/jobs", json=body, headers={**stranger, "Idempotency-Key": "k-1"})
    assert theirs.status_code == 202 and theirs.get_json()["id"] != first.get_json()["id"]


def test_operator_cli_cancels_and_retries_jobs(stack, tenant):
    import subprocess
    import sys

    def genline(*args):
        return subprocess.run([sys.executable, "-m", "pipeline.cli", "jobs", *args], env=stack.env,
                              capture_output=True, text=True, timeout=60, cwd=services.ROOT)

    # Given a running job
    job = stack.submit(tenant, {"prompt": "ops", "params": {**SMALL, "simulate": {"latency_s": 30}}})
    # When an operator cancels it by id, Then it is canceled (and a second cancel fails with the reason)
    result = genline("cancel", job["id"])
    assert result.returncode == 0 and "canceled" in result.stdout, result.stderr
    assert stack.job(tenant, job["id"])["status"] == "canceled"
    again = genline("cancel", job["id"])
    assert again.returncode == 1 and "already canceled" in again.stderr
    # Given a job that failed its only attempt
    failed = stack.submit(tenant, {"prompt": "ops", "params": {**SMALL, "simulate": {"fail_attempts": 1}},
                                   "budget": {"max_attempts": 1}})
    assert stack.wait(tenant, failed["id"])["error"]["code"] == "provider_error"
    # When the operator retries it, Then it gets a fresh attempt and completes
    result = genline("retry", failed["id"])
    assert result.returncode == 0 and "queued" in result.stdout, result.stderr
    done = stack.wait(tenant, failed["id"], timeout=60)
    assert done["status"] == "completed" and done["attempt"] == 2, done["error"]
    # And a cancel without ids or filters is refused
    assert genline("cancel").returncode == 2
