"""GET /v1/jobs: newest first, keyset pagination, filters."""
from __future__ import annotations

import threading

from pipeline.store import jobs


def _insert(stack, tenant_id, n, operation="generate", prompt="p"):
    """Insert jobs straight into the store (never dispatched: listing needs no worker)."""
    made = []
    with stack.app.app_context():
        for _ in range(n):
            made.append(jobs.create(jobs.NewJob(
                tenant_id=tenant_id, operation=operation, providers=["local"], prompt=prompt,
                params={"size": "16x16", "n": 1, "format": "png"}, inputs=None,
                timeout_s=10, deadline_s=30, max_attempts=1)).id)
    return made


def _all_pages(stack, headers, query=""):
    seen, cursor, pages = [], None, 0
    while True:
        url = f"/v1/jobs?limit=7{query}" + (f"&cursor={cursor}" if cursor else "")
        response = stack.client.get(url, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        page = response.get_json()
        seen.extend(j["id"] for j in page["data"])
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            return seen, pages


def test_every_job_exactly_once_across_pages_while_jobs_are_inserted(stack, tenant):
    # Given 50 jobs
    existing = _insert(stack, tenant["X-Tenant"], 50)

    # When we page through while another thread keeps inserting
    stop = threading.Event()
    inserted = []

    def writer():
        while not stop.is_set():
            inserted.extend(_insert(stack, tenant["X-Tenant"], 1))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen, pages = _all_pages(stack, tenant)
    finally:
        stop.set()
        thread.join()

    # Then every job that existed is listed exactly once, newest first
    assert len(seen) == len(set(seen))
    assert set(existing) <= set(seen)
    assert seen == sorted(seen, reverse=True)
    assert set(seen) - set(existing) <= set(inserted)
    assert pages >= 8


def test_filters_and_limits(stack, tenant):
    made = _insert(stack, tenant["X-Tenant"], 3, operation="generate")
    _insert(stack, tenant["X-Tenant"], 2, operation="edit")
    with stack.app.app_context():
        from pipeline.core.lifecycle import JobStatus
        jobs.transition(made[0], JobStatus.CANCELED)
    assert len(_all_pages(stack, tenant, "&operation=edit")[0]) == 2
    assert _all_pages(stack, tenant, "&status=canceled")[0] == [made[0]]
    assert len(_all_pages(stack, tenant, "&status=queued,canceled")[0]) == 5
    assert _all_pages(stack, tenant, "&created_after=2999-01-01T00:00:00Z")[0] == []
    assert len(_all_pages(stack, tenant, "&created_before=2999-01-01T00:00:00Z")[0]) == 5


def test_a_tenant_lists_only_its_own_jobs(stack, tenant):
    mine = _insert(stack, tenant["X-Tenant"], 2)
    _insert(stack, "someone-else", 3)
    assert sorted(_all_pages(stack, tenant)[0]) == sorted(mine)


def test_bad_list_queries_are_422(stack, tenant):
    for query in ["limit=0", "limit=101", "limit=abc", "status=done", "cursor=garbage",
                  "created_after=yesterday", "operation=upscale", "colour=red"]:
        response = stack.client.get(f"/v1/jobs?{query}", headers=tenant)
        assert response.status_code == 422, (query, response.get_data(as_text=True))
        assert response.get_json()["error"]["code"] == "invalid_input"
