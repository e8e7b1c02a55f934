"""The lifecycle table and the job store's compare-and-set transitions."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipeline.core.lifecycle import JobStatus, Step
from pipeline.store import jobs, staging
from pipeline.store.models import StagedOutput, db

S = JobStatus


def _new_job(stack, tenant="lifecycle"):
    with stack.app.app_context():
        return jobs.create(jobs.NewJob(
            tenant_id=tenant, operation="generate", providers=["local"], prompt="p",
            params={"size": "16x16", "n": 1, "format": "png"}, inputs=None,
            timeout_s=10, deadline_s=30, max_attempts=1,
        ))


def test_an_illegal_transition_is_refused_and_appends_nothing(stack):
    # Given a queued job (never dispatched, so no worker touches it)
    job = _new_job(stack)
    with stack.app.app_context():
        # When something tries to complete it straight from queued
        moved = jobs.transition(job.id, S.COMPLETED)
        # Then nothing changed and no event was appended
        assert moved is False
        assert jobs.get(job.id).status == "queued"
        assert [e["type"] for e in jobs.events_after(job.id)] == ["queued"]


def test_a_transition_happens_once_even_when_asked_twice(stack):
    job = _new_job(stack)
    with stack.app.app_context():
        assert jobs.transition(job.id, S.CANCELED) is True
        assert jobs.transition(job.id, S.CANCELED) is False
        assert [e["type"] for e in jobs.events_after(job.id)] == ["queued", "canceled"]
        assert jobs.transition(job.id, S.PROCESSING) is False


def test_a_step_is_claimed_by_one_message_only(stack):
    job = _new_job(stack)
    with stack.app.app_context():
        first = jobs.claim(job.id, Step.VALIDATE, "owner-a", 30)
        second = jobs.claim(job.id, Step.VALIDATE, "owner-b", 30)
        wrong_step = jobs.claim(job.id, Step.UPLOAD, "owner-c", 30)
    assert first is not None and first.lease_owner == "owner-a"
    assert second is None and wrong_step is None


@pytest.mark.parametrize("step", ["validate", "generate", "upload"])
def test_a_duplicated_step_message_does_not_move_a_completed_job(stack, tenant, step):
    # Given a completed job
    done = stack.wait(tenant, stack.submit(tenant, {"prompt": "once", "params": {"size": "16x16"}})["id"])
    assert done["status"] == "completed"
    before = stack.events(done["id"])

    # When a late duplicate of one of its step messages reaches the worker
    celery = stack.app.extensions["celery"]
    celery.send_task(f"genline.{step}", args=[done["id"]], queue="normal")
    # ... followed by a fresh job on the same worker, so the duplicate has surely been handled
    stack.wait(tenant, stack.submit(tenant, {"prompt": "after", "params": {"size": "16x16"}})["id"])

    # Then the job is unchanged and has exactly one completed event
    after = stack.job(tenant, done["id"])
    assert after["status"] == "completed" and after["attempt"] == done["attempt"]
    assert after["outputs"][0]["sha256"] == done["outputs"][0]["sha256"]
    events = stack.events(done["id"])
    assert events == before
    assert [e["type"] for e in events].count("completed") == 1


def _staged(job_id: str) -> list[tuple]:
    found = db.session.execute(db.select(StagedOutput.n, StagedOutput.data)
                               .where(StagedOutput.job_id == job_id).order_by(StagedOutput.n)).all()
    db.session.rollback()
    return [(n, bytes(data)) for n, data in found]


@pytest.mark.parametrize("which", ["stack", "sqlite_stack"])
def test_generate_end_replaces_an_earlier_attempts_staged_images_and_only_with_its_lease(request, which):
    stack = request.getfixturevalue(which)
    job = _new_job(stack)
    with stack.app.app_context():
        # Given a job in its generate step, with three images left staged by an earlier attempt
        db.session.add_all([StagedOutput(job_id=job.id, n=n, media_type="image/png", data=b"old%d" % n)
                            for n in range(3)])
        db.session.commit()
        assert jobs.claim(job.id, Step.VALIDATE, "v", 30) is not None
        assert jobs.end_step(job.id, Step.VALIDATE, "v", {"step": "generate"}) is True
        assert jobs.claim(job.id, Step.GENERATE, "g", 30) is not None
        images = [SimpleNamespace(media_type="image/png", data=b"new%d" % n, model=None) for n in range(2)]
        rows = staging.rows_of(job.id, images, "local", "m")
        # When a writer that lost the lease ends the step, nothing is staged
        assert jobs.end_step(job.id, Step.GENERATE, "someone-else", {"step": "upload"}, stages=rows) is False
        assert _staged(job.id) == [(0, b"old0"), (1, b"old1"), (2, b"old2")]
        # When the lease holder ends it with two images
        assert jobs.end_step(job.id, Step.GENERATE, "g", {"step": "upload"}, stages=rows) is True
        # Then exactly those two are staged, with the job's move to upload
        assert _staged(job.id) == [(0, b"new0"), (1, b"new1")]
        assert jobs.get(job.id).step == "upload"
