"""Retention deletes old terminal jobs with their events and outputs, and nothing else."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

from pipeline.service.retention import purge_once
from pipeline.store import jobs
from pipeline.store.models import utcnow


def test_old_terminal_jobs_lose_row_events_and_outputs_while_active_ones_stay(stack, tenant):
    # Given a completed job with an output file, and a queued job nobody runs
    done = stack.wait(tenant, stack.submit(tenant, {"prompt": "old", "params": {"size": "16x16"}})["id"])
    root = Path(urlparse(stack.env["STORAGE_URL"]).path)
    [output] = (root / f"outputs/{done['id']}").glob("*/0.png")  # one folder per upload attempt
    with stack.app.app_context():
        queued = jobs.create(jobs.NewJob(
            tenant_id=tenant["X-Tenant"], operation="generate", providers=["local"], prompt="idle",
            params={"size": "16x16", "n": 1, "format": "png"}, inputs=None,
            timeout_s=10, deadline_s=30, max_attempts=1))

        # When retention runs (in batches, until done) as if eight days had passed
        while purge_once(now=utcnow() + timedelta(days=8))["jobs"]:
            pass

        # Then the completed job, its events and its output are gone; the queued job is untouched
        assert jobs.get(done["id"]) is None
        assert jobs.events_after(done["id"]) == []
        assert not output.exists()
        assert jobs.get(queued.id).status == "queued"


def test_recent_jobs_are_kept(stack, tenant):
    done = stack.wait(tenant, stack.submit(tenant, {"prompt": "new", "params": {"size": "16x16"}})["id"])
    with stack.app.app_context():
        purge_once()
        assert jobs.get(done["id"]) is not None
