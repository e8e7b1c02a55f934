"""ETA of queued jobs (DESIGN §2, §8; pipeline/service/eta.py): null without history, from the queue and
recent service times with it, and an ``estimation`` SSE event when it moves by more than 10%."""
from __future__ import annotations

from datetime import datetime
from itertools import pairwise

from pipeline.adapters import events
from pipeline.service import eta
from tests.sse import Reader

SMALL = {"size": "16x16"}


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _history(stack, tenant, latency: float, count: int = 4) -> None:
    """Run ``count`` jobs of ``latency`` seconds to completion on the stack's worker."""
    done = [stack.submit(tenant, {"prompt": "h", "params": {**SMALL, "simulate": {"latency_s": latency}}})
            for _ in range(count)]
    for job in done:
        assert stack.wait(tenant, job["id"], timeout=90)["status"] == "completed"


def _means(stack) -> dict:
    with stack.app.app_context():
        return {k.decode(): float(v) for k, v in events.client().hgetall(eta.KEY).items()}


def _queued(stack, tenant, count: int) -> tuple[list[float], list[float]]:
    """Submit ``count`` jobs to a stack with no worker; by position, each one's estimated finish (from one
    list read: one instant for all) and its estimated finish minus its creation."""
    jobs = [stack.submit(tenant, {"prompt": "q", "params": SMALL}) for _ in range(count)]
    read = [stack.job(tenant, j["id"]) for j in jobs]
    assert [j["queue_position"] for j in read] == list(range(1, count + 1))
    for j in read:
        assert _ts(j["estimated_start_at"]) <= _ts(j["estimated_finish_at"])
    listed = {j["id"]: j for j in stack.client.get("/v1/jobs", headers=tenant).get_json()["data"]}
    for j in read:  # the list carries the same estimates (read a moment later: within a second)
        assert abs(_ts(listed[j["id"]]["estimated_finish_at"]) - _ts(j["estimated_finish_at"])) < 1.0
    finishes = [_ts(listed[j["id"]]["estimated_finish_at"]) for j in jobs]
    return finishes, [f - _ts(j["created_at"]) for f, j in zip(finishes, jobs)]


def _cancel_all(stack, tenant) -> None:
    for j in stack.client.get("/v1/jobs?status=queued", headers=tenant).get_json()["data"]:
        assert stack.client.post(f"/v1/jobs/{j['id']}/cancel", headers=tenant).status_code == 202


def test_no_history_means_null_estimates(make_stack):
    # Given a stack that never ran a job
    stack = make_stack()
    tenant = stack.new_tenant("eta0")

    # When a job is queued behind another
    stack.submit(tenant, {"prompt": "a", "params": SMALL})
    job = stack.submit(tenant, {"prompt": "b", "params": SMALL})

    # Then it has a queue position but no estimate, in its answer, its read and the list
    assert job["queue_position"] == 2
    assert job["estimated_start_at"] is None and job["estimated_finish_at"] is None
    read = stack.job(tenant, job["id"])
    assert read["estimated_start_at"] is None and read["estimated_finish_at"] is None
    listed = stack.client.get("/v1/jobs", headers=tenant).get_json()["data"]
    assert all(j["estimated_finish_at"] is None for j in listed)


def test_estimates_grow_with_the_queue_ahead_and_with_the_known_latency(make_stack):
    # Given a worker that ran jobs of a known generate latency (0.3 s)
    stack = make_stack()
    tenant = stack.new_tenant("eta1")
    worker = stack.start_worker(concurrency=2, name="eta1")
    _history(stack, tenant, 0.3)
    means = _means(stack)
    assert means["generate:local:n"] >= eta.MIN_SAMPLES and 0.3 <= means["generate:*"] < 1.0
    assert means["job:local"] >= means["generate:local"]
    worker.stop()

    # When jobs queue up with no worker consuming them
    short_finish, short = _queued(stack, tenant, 4)

    # Then each job's estimated finish is later the more jobs are ahead of it, by about one generate each
    assert all(b > a for a, b in pairwise(short_finish)), short_finish
    # (the pace between starts: the observed gap between generate ends, else the generate mean;
    # at least a generate per GENLINE_TENANT_CONCURRENCY (4), the tenant's own cap)
    fleet = means["gap"] if means.get("gap:n", 0) >= eta.MIN_SAMPLES else means["generate:*"]
    step = max(fleet, means["generate:*"] / 4)
    for a, b in pairwise(short_finish[1:]):
        assert 0.9 * step <= b - a <= 1.1 * step, (short_finish, step)

    # And once the recent generates take longer (1.5 s), the same positions get later estimates
    _cancel_all(stack, tenant)
    worker = stack.start_worker(concurrency=2, name="eta1b")
    _history(stack, tenant, 1.5, count=5)
    assert _means(stack)["generate:*"] > 2 * means["generate:*"]
    worker.stop()
    long_finish, long = _queued(stack, tenant, 4)
    assert all(lo > sh for sh, lo in zip(short, long)), (short, long)
    assert long_finish[-1] - long_finish[0] > short_finish[-1] - short_finish[0]


def test_the_stream_sends_an_estimation_when_the_estimate_moves(make_stack):
    # Given history (a worker ran jobs), then no worker, and a job third in the queue
    stack = make_stack(GENLINE_SSE_HEARTBEAT_S=0.3)
    tenant = stack.new_tenant("eta2")
    worker = stack.start_worker(concurrency=2, name="eta2")
    _history(stack, tenant, 1.0, count=3)
    worker.stop()
    ahead = [stack.submit(tenant, {"prompt": "a", "params": SMALL}) for _ in range(4)]
    job = stack.submit(tenant, {"prompt": "mine", "params": SMALL})
    assert job["queue_position"] == 5

    # When its stream is open
    response = stack.client.get(f"/v1/jobs/{job['id']}/events", headers=tenant, buffered=False)
    frames = Reader(response.iter_encoded()).events(estimations=True)
    first = next(f for f in frames if f["event"] == "estimation")
    # Then the first estimation comes at once; its id repeats the last logged event's (Last-Event-ID
    # keeps naming the log, and clients that skip seen ids ignore it)
    logged = stack.events(job["id"])
    assert first["id"] == str(logged[-1]["id"]) and first["data"]["id"] == logged[-1]["id"]
    first = first["data"]["data"]
    assert first["queue_position"] == 5
    assert abs(_ts(first["estimated_finish_at"]) - _ts(job["estimated_finish_at"])) < 1.0

    # And when the jobs ahead are canceled, the estimate moves and a new estimation says so
    for j in ahead:
        assert stack.client.post(f"/v1/jobs/{j['id']}/cancel", headers=tenant).status_code == 202
    moved = next(f["data"]["data"] for f in frames
                 if f["event"] == "estimation" and f["data"]["data"]["queue_position"] == 1)
    assert _ts(moved["estimated_finish_at"]) < _ts(first["estimated_finish_at"]) - 1.0
    response.close()


def test_a_tenant_capped_below_the_fleet_waits_for_its_own_jobs(make_stack):
    # Given history from a worker of two processes, then no worker
    from web.keys import create_key
    stack = make_stack()
    other = stack.new_tenant("eta3")
    worker = stack.start_worker(concurrency=2, name="eta3")
    _history(stack, other, 0.5, count=6)
    means = _means(stack)
    worker.stop()
    # And a tenant whose key lets one of its jobs run at a time
    with stack.app.app_context():
        _row, key = create_key("eta-capped", concurrency=1)
    capped = {"Authorization": f"Bearer {key}"}

    # When each tenant queues three jobs
    def starts(headers):
        jobs = [stack.submit(headers, {"prompt": "c", "params": SMALL}) for _ in range(3)]
        return [_ts(stack.job(headers, j["id"])["estimated_start_at"]) - _ts(j["created_at"]) for j in jobs]
    capped_waits = starts(capped)
    _cancel_all(stack, capped)
    free_waits = starts(other)

    # Then the capped tenant's third job waits for its two jobs ahead, one at a time (a generate each,
    # less half of the first), while the other tenant's shares the fleet's pace
    assert capped_waits[2] >= 1.3 * means["generate:*"], (capped_waits, means)
    assert capped_waits[2] > free_waits[2] + 0.2 * means["generate:*"], (capped_waits, free_waits, means)
