"""jobs.create: a queued job and its ``queued`` event, and a snapshot that is the row as stored.

The snapshot is made from the values inserted (the row is not read back), so
it must hold every column as reading the row would give it: defaults filled,
floats as floats, JSON as decoded JSON; on Postgres and on SQLite alike.
"""
from __future__ import annotations

import pytest

from pipeline.store import jobs

MINIMAL = dict(tenant_id="create", operation="generate", providers=("local",), prompt="p",
               params={"size": "16x16"}, inputs=None, timeout_s=10, deadline_s=30, max_attempts=1)
FULL = dict(MINIMAL, operation="edit", providers=["local", "http"], prompt="q ✓", params={"size": "16x16", "seed": 7},
            inputs={"images": ["upl_x"]}, timeout_s=6.5, deadline_s=12.0, max_attempts=2, priority="high",
            metadata={"k": [1, 2.5, None]}, webhook={"url": "http://x.test/h", "events": ["completed"]},
            model="m", idempotency_key="create-key", request_sha256="ab" * 32)


@pytest.mark.parametrize("store", ["stack", "sqlite_stack"])
@pytest.mark.parametrize("fields", [MINIMAL, FULL], ids=["minimal", "full"])
def test_the_snapshot_of_a_new_job_is_the_row_read_back(request, store, fields):
    stack = request.getfixturevalue(store)
    with stack.app.app_context():
        # When a job is created (never dispatched: no worker touches it)
        made = jobs.create(jobs.NewJob(**fields))
        stored = jobs.get(made.id)
        events = jobs.events_after(made.id)

    # Then its snapshot holds every column, with the values and types the stored row has
    assert vars(made) == vars(stored)
    assert {k: type(v) for k, v in vars(made).items()} == {k: type(v) for k, v in vars(stored).items()}
    assert made.status == "queued" and made.step == "validate" and made.event_seq == 1
    assert (made.attempt, made.lost_count, made.step_outputs, made.timing) == (0, 0, {}, {})
    assert made.job_metadata == (fields.get("metadata") or {})
    assert made.progress is None and made.outputs is None and made.started_at is None
    # And its one event is the queued event, as it was published
    assert events == [{"id": 1, "job_id": made.id, "type": "queued", "data": {},
                       "created_at": made.created_at.isoformat().replace("+00:00", "Z")}]
