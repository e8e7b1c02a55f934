"""Per-step progress events (``jobs.record_progress`` and ``pipeline.worker.progress``) on both
databases: written in order while the lease is held, refused once it is not."""
from __future__ import annotations

import pytest

from pipeline.core.lifecycle import Step
from tests.conftest import Stack, base_env


@pytest.fixture(params=["postgres", "sqlite"])
def app(request, tmp_path, log_dir, redis_server):
    if request.param == "postgres":
        database = request.getfixturevalue("pg_database")
    else:
        database = f"sqlite:///{tmp_path / 'genline.db'}"
    stack = Stack(base_env(database, redis_server.url.replace("/0", "/3"), (tmp_path / "out").as_uri()), log_dir)
    stack.migrate()
    return stack.app


def leased_job(owner: str) -> str:
    from pipeline.store import jobs
    job = jobs.create(jobs.NewJob(tenant_id="t-progress", operation="generate", providers=["diffusers"],
                                  prompt="p", params={}, inputs=None, timeout_s=60, deadline_s=120, max_attempts=1))
    assert jobs.claim(job.id, Step.VALIDATE, owner, 30) is not None
    return job.id


def test_step_events_are_written_in_order_behind_the_caller_and_only_under_the_lease(app):
    from pipeline.store import jobs
    from pipeline.worker import progress
    with app.app_context():
        job_id = leased_job("owner-1")
        writer = progress.writer(app)
        for done in range(1, 6):
            writer.put(jobs.record_progress, job_id, "owner-1", done / 5, {"step": done, "steps": 5})
        writer.put(jobs.record_progress, job_id, "someone-else", 0.1, {"step": 99, "steps": 5})
        assert writer.flush(10)
        steps = [e["data"]["step"] for e in jobs.events_after(job_id) if e["type"] == "progress"]
        assert steps == [1, 2, 3, 4, 5]
        assert jobs.get(job_id).progress == 1.0
        assert jobs.record_progress(job_id, "someone-else", 0.5, {"step": 1}) is False
