"""Recovering from an incident on real workers: the failed-jobs view, bulk replay at a
bounded rate behind live traffic, and the tenant throttle that delays instead of refusing."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

from tests import services

SMALL = {"size": "16x16"}
OUTAGE = {"prompt": "during the outage", "budget": {"max_attempts": 1},
          "params": {**SMALL, "simulate": {"latency_s": 0.4, "fail_attempts": 1, "fail_code": "provider_error"}}}


def stamp(offset_s: float = 0.0) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def starts(stack, job_id: str, step: str = "generate") -> list[datetime]:
    return [when(e["created_at"]) for e in stack.events(job_id)
            if e["type"] == "started" and e["data"].get("step") == step]


def count(stack, job_id: str, kind: str) -> int:
    return sum(e["type"] == kind for e in stack.events(job_id))


def genline(stack, *args):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=stack.env,
                          capture_output=True, text=True, timeout=90, cwd=services.ROOT)


def test_an_outage_is_replayed_by_error_code_and_window_at_a_bounded_rate_behind_live_jobs(make_stack):
    # Given a stack whose replays enter the queues at 4 jobs a second
    stack = make_stack(GENLINE_REPLAY_RATE="4/second")
    stack.start_worker(concurrency=2, name="replay")
    stack.start_beat()
    tenant = stack.new_tenant("incident")

    # And a provider outage: every job submitted in the window fails with provider_error,
    # besides two jobs refused for unsafe content
    before = stamp(-1)
    failed = [stack.submit(tenant, OUTAGE)["id"] for _ in range(16)]
    unsafe = [stack.submit(tenant, {**OUTAGE, "params": {**SMALL, "simulate": {
        "fail_attempts": 1, "fail_code": "unsafe_content"}}})["id"] for _ in range(2)]
    for job_id in failed + unsafe:
        stack.wait(tenant, job_id, timeout=90)
    after = stamp(1)

    # When the tenant looks at its failures
    view = stack.client.get(f"/v1/jobs/failures?created_after={before}", headers=tenant)
    assert view.status_code == 200, view.get_data(as_text=True)
    groups = {g["error_code"]: g for g in view.get_json()["groups"]}
    # Then they are grouped by error code, provider and step, with counts and the latest message
    outage = groups["provider_error"]
    assert (outage["count"], outage["provider"], outage["step"]) == (16, "local", "generate")
    assert "simulated provider_error" in outage["latest_message"] and outage["retryable"] is True
    assert groups["unsafe_content"]["count"] == 2 and view.get_json()["total"] == 18
    # And the group's list link lists exactly its jobs
    listed = stack.client.get(outage["links"]["list"] + "&limit=100", headers=tenant).get_json()["data"]
    assert sorted(j["id"] for j in listed) == sorted(failed)

    # When the operator dry-runs the replay by error code and window
    body = {"error_code": "provider_error", "created_after": before, "created_before": after}
    dry = stack.client.post("/v1/jobs/retry", json={**body, "dry_run": True}, headers=tenant)
    # Then it says what would be replayed and changes nothing
    assert dry.status_code == 200, dry.get_data(as_text=True)
    assert (dry.get_json()["matched"], dry.get_json()["requeued"]) == (16, 0)
    assert all(stack.job(tenant, i)["status"] == "failed" for i in failed)

    # And pages through it with a cursor
    page = stack.client.post("/v1/jobs/retry", json={**body, "dry_run": True, "limit": 6}, headers=tenant).get_json()
    assert (page["matched"], page["remaining"]) == (6, 10) and page["next_cursor"] == page["jobs"][-1]["id"]
    rest = stack.client.post("/v1/jobs/retry", json={**body, "dry_run": True, "cursor": page["next_cursor"]},
                             headers=tenant).get_json()
    assert (rest["matched"], rest["remaining"], rest["next_cursor"]) == (10, 0, None)
    assert sorted(j["id"] for j in page["jobs"] + rest["jobs"]) == sorted(failed)

    # When it replays them, twice at the same moment
    replayed_at = datetime.now(timezone.utc)
    answers = []

    def call():
        answers.append(stack.client.post("/v1/jobs/retry", json=body, headers=tenant))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # Then the answers come at once, and together re-queue every job once
    assert [a.status_code for a in answers] == [202, 202], [a.get_data(as_text=True) for a in answers]
    assert sum(a.get_json()["requeued"] for a in answers) == 16
    assert (datetime.now(timezone.utc) - replayed_at).total_seconds() < 10

    # And live jobs submitted during the replay (once its first job runs again) are not starved behind it
    services.wait_for(lambda: any(stack.job(tenant, i)["status"] in ("processing", "completed") for i in failed),
                      30, "the replay to be running")
    live = [stack.submit(tenant, {"prompt": "live", "params": SMALL})["id"] for _ in range(3)]

    # Then every replayed job completes, once, from generate, with a fresh deadline
    done = {i: stack.wait(tenant, i, timeout=120) for i in failed}
    assert all(j["status"] == "completed" for j in done.values()), [j["error"] for j in done.values()]
    for job_id, job in done.items():
        assert count(stack, job_id, "completed") == 1
        assert len(starts(stack, job_id)) == 2 and len(starts(stack, job_id, "validate")) == 1
        assert when(job["deadline_at"]) >= replayed_at + timedelta(seconds=job["budget"]["deadline_s"])
        replays = [e for e in stack.events(job_id) if e["type"] == "queued" and e["data"].get("replay")]
        assert len(replays) == 1 and replays[0]["data"]["by"].startswith("key_")
    # And they entered at the replay rate: 16 admissions at 4/second span at least 3 seconds
    restarts = sorted(starts(stack, i)[1] for i in failed)
    assert (restarts[-1] - restarts[0]).total_seconds() >= 2.5, restarts
    # And the live jobs finished before the replay did
    live_done = [stack.wait(tenant, i, timeout=60) for i in live]
    assert all(j["status"] == "completed" for j in live_done)
    assert max(when(j["completed_at"]) for j in live_done) < max(when(j["completed_at"]) for j in done.values())
    # And the jobs the filter did not match are still failed
    assert all(stack.job(tenant, i)["status"] == "failed" for i in unsafe)
    # And a second replay of the same window finds nothing to do
    again = stack.client.post("/v1/jobs/retry", json=body, headers=tenant).get_json()
    assert (again["matched"], again["requeued"]) == (0, 0)


def test_bulk_replay_across_tenants_is_for_operators_only(make_stack):
    # Given two tenants, each with a job failed by the outage
    stack = make_stack()
    stack.start_worker(concurrency=2, name="ops-replay")
    stack.start_beat()
    one, two = stack.new_tenant("one"), stack.new_tenant("two")
    since = stamp(-1)
    jobs = {stack.submit(h, OUTAGE)["id"]: h for h in (one, two)}
    for job_id, h in jobs.items():
        assert stack.wait(h, job_id, timeout=60)["status"] == "failed"
    theirs = next(i for i, h in jobs.items() if h is two)

    # When a tenant key asks to replay another tenant's jobs, Then 403 and nothing moves
    refused = stack.client.post("/v1/jobs/retry", json={"tenant": two["X-Tenant"], "error_code": "provider_error"},
                                headers=one)
    assert refused.status_code == 403, refused.get_data(as_text=True)
    assert refused.get_json()["error"]["fields"] == {"tenant": "operators only"}
    # And naming the other tenant's job by id does not reach it
    by_id = stack.client.post("/v1/jobs/retry", json={"ids": [theirs], "dry_run": True}, headers=one).get_json()
    assert by_id["matched"] == 0
    assert stack.job(two, theirs)["status"] == "failed"
    # And the key's failures view shows its own job only
    mine = stack.client.get("/v1/jobs/failures", headers=one).get_json()
    assert mine["total"] == 1

    # When the operator looks at failures across tenants with the CLI
    view = genline(stack, "jobs", "failures", "--created-after", since)
    assert view.returncode == 0, view.stderr
    assert "provider_error" in view.stdout and "     2  " in view.stdout, view.stdout
    # And replays them all (a dry run first)
    dry = genline(stack, "jobs", "retry", "--error-code", "provider_error", "--created-after", since, "--dry-run")
    assert dry.returncode == 0 and "matched 2, would replay 2" in dry.stdout, dry.stdout + dry.stderr
    run = genline(stack, "jobs", "retry", "--error-code", "provider_error", "--created-after", since)
    assert run.returncode == 0 and "matched 2, requeued 2" in run.stdout, run.stdout + run.stderr

    # Then both tenants' jobs complete, their events naming the operator
    for job_id, h in jobs.items():
        assert stack.wait(h, job_id, timeout=60)["status"] == "completed"
        replays = [e for e in stack.events(job_id) if e["type"] == "queued" and e["data"].get("replay")]
        assert [e["data"]["by"] for e in replays] == ["operator"]


def test_a_throttled_tenant_runs_at_its_rate_while_another_is_not_slowed(make_stack):
    # Given a throttle of one generate start a second per tenant, and a tenant whose key lifts it
    from web.keys import create_key
    stack = make_stack(GENLINE_TENANT_THROTTLE="1/second")
    stack.start_worker(concurrency=2, name="throttle")
    stack.start_beat()
    slow = stack.new_tenant("slow")
    with stack.app.app_context():
        _row, key = create_key(f"fast-{time.monotonic_ns()}", throttle="1000/second")
    fast = {"Authorization": f"Bearer {key}"}

    # When both submit 5 quick jobs at once
    body = {"prompt": "quick", "params": SMALL}
    slow_ids = [stack.submit(slow, body)["id"] for _ in range(5)]
    fast_ids = [stack.submit(fast, body)["id"] for _ in range(5)]

    # Then the throttled tenant's waiting jobs stay queued, with a queue position, holding no worker
    # (read in one list request: its positions are one reading of the queue, whereas one
    # request per job would see the queue move between two of them)
    def held_jobs():
        listed = stack.client.get("/v1/jobs?status=queued&step=generate", headers=slow).get_json()["data"]
        held = [j for j in listed if j["id"] in slow_ids]
        return held if len(held) >= 2 else None
    held = services.wait_for(held_jobs, 20, "the throttled tenant's jobs waiting")
    positions = [j["queue_position"] for j in held]
    assert all(isinstance(p, int) and p >= 1 for p in positions) and len(set(positions)) == len(positions)

    # And every job completes, and none was refused
    slow_done = [stack.wait(slow, i, timeout=60) for i in slow_ids]
    fast_done = [stack.wait(fast, i, timeout=60) for i in fast_ids]
    assert [j["status"] for j in slow_done + fast_done] == ["completed"] * 10

    # And the throttled tenant started one job a second: 5 starts span 4 seconds, none in a burst
    # (a start is recorded by its claim, a moment after the throttle let it go: hence the margins)
    slow_starts = sorted(s for i in slow_ids for s in starts(stack, i))
    gaps = [round((b - a).total_seconds(), 3) for a, b in zip(slow_starts, slow_starts[1:])]
    assert len(slow_starts) == 5 and sum(gaps) >= 3.5 and min(gaps) >= 0.5, gaps
    # And the other tenant was not slowed: all its jobs were done before the throttled one's last start
    fast_end = max(when(j["completed_at"]) for j in fast_done)
    assert fast_end < slow_starts[-1], (fast_end, slow_starts)


def test_replayed_jobs_wait_behind_live_work_of_their_priority_and_enter_at_the_rate(make_stack):
    # Given a stack with no worker (messages stay in the queues) and a replay rate of 3 a minute
    from pipeline.core.lifecycle import JobStatus
    from pipeline.service import admission
    from pipeline.store import jobs
    stack = make_stack(GENLINE_REPLAY_RATE="3/minute")
    headers = stack.new_tenant("behind")
    spec = jobs.NewJob(tenant_id=headers["X-Tenant"], operation="generate", providers=["local"], prompt="old",
                       params=SMALL, inputs=None, timeout_s=30, deadline_s=60, max_attempts=1)
    error = {"code": "provider_error", "message": "down", "retryable": True, "step": "validate"}
    with stack.app.app_context():
        old = [jobs.create(spec).id for _ in range(5)]
        for job_id in old:
            assert jobs.transition(job_id, JobStatus.FAILED, error=error)
    # And four live jobs waiting in the normal queue
    live = [stack.submit(headers, {"prompt": "live", "params": SMALL})["id"] for _ in range(4)]

    # When the five failed jobs are replayed
    answer = stack.client.post("/v1/jobs/retry", json={"error_code": "provider_error"}, headers=headers)
    assert answer.status_code == 202 and answer.get_json()["requeued"] == 5, answer.get_data(as_text=True)
    assert answer.get_json()["admission"] == {"rate": "3/minute", "waiting": 5}

    # Then they wait behind the live jobs, older as they are, and the live jobs' positions did not move
    assert [stack.job(headers, i)["queue_position"] for i in live] == [1, 2, 3, 4]
    assert [stack.job(headers, i)["queue_position"] for i in old] == [5, 6, 7, 8, 9]
    listed = {j["id"]: j["queue_position"] for j in stack.client.get("/v1/jobs", headers=headers).get_json()["data"]}
    assert [listed[i] for i in live + old] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    # And none enters the queue while live work of its priority waits there
    with stack.app.app_context():
        assert admission.admit_once() == {"throttle": 0, "replay": 0}
        assert admission.queue_depth("io.normal") == 4
        # When the live work is taken off the queue
        with stack.app.extensions["celery"].connection_for_write() as conn:
            conn.default_channel.queue_purge("io.normal")
        # Then replayed jobs enter it, no more than the rate allows, oldest first
        assert admission.admit_once() == {"throttle": 0, "replay": 3}
        assert admission.admit_once() == {"throttle": 0, "replay": 0}
        # (they never started: they resume at validate, on the I/O kind's queue)
        assert admission.queue_depth("io.normal") == 3
        assert admission.waiting(headers["X-Tenant"]) == 2
        assert [jobs.get(i).held for i in old] == [None, None, None, "replay", "replay"]
        assert all(jobs.get(i).status == "queued" for i in old)


def test_a_replay_survives_the_restart_of_every_process_and_of_redis(make_stack):
    # Given 8 failed jobs replayed at 1 a second (slow enough that some still wait when beat dies)
    import signal
    stack = make_stack(GENLINE_REPLAY_RATE="1/second")
    worker = stack.start_worker(concurrency=2, name="restart")
    beat = stack.start_beat()
    headers = stack.new_tenant("restart")
    failed = [stack.submit(headers, OUTAGE)["id"] for _ in range(8)]
    for job_id in failed:
        assert stack.wait(headers, job_id, timeout=60)["status"] == "failed"
    answer = stack.client.post("/v1/jobs/retry", json={"error_code": "provider_error"}, headers=headers)
    assert answer.get_json()["requeued"] == 8

    # When beat and the worker are killed mid-replay, and Redis restarts (its rate window,
    # queues and markers lost)
    services.wait_for(lambda: any(starts(stack, i)[1:] for i in failed), 30, "a replayed job to start")
    beat.signal(signal.SIGKILL)
    worker.kill_group()
    for proc in (beat, worker):
        stack.processes.remove(proc)
    stack.redis.restart()
    held = [i for i in failed if stack.job(headers, i)["status"] == "queued"
            and stack.job(headers, i)["step"] == "generate" and not starts(stack, i)[1:]]
    assert held, ("every job was admitted before the restart; nothing left to check",
                  [(stack.job(headers, i)["status"], len(starts(stack, i))) for i in failed])
    stack.start_worker(concurrency=2, name="restarted")
    stack.start_beat()

    # Then every job still completes, once, its replay recorded once (an attempt running
    # while Redis went away is lost and run again: the reaper's business, not the replay's)
    done = [stack.wait(headers, i, timeout=90) for i in failed]
    assert [j["status"] for j in done] == ["completed"] * 8, [j["error"] for j in done]
    for job_id in failed:
        replays = [e for e in stack.events(job_id) if e["type"] == "queued" and e["data"].get("replay")]
        assert count(stack, job_id, "completed") == 1 and len(replays) == 1, stack.events(job_id)


def test_failures_and_replay_work_on_sqlite(sqlite_stack):
    # Given a job failed by the outage on the embedded SQLite database
    from pipeline.service import admission
    stack = sqlite_stack
    headers = stack.new_tenant("lite")
    job_id = stack.submit(headers, OUTAGE)["id"]
    assert stack.wait(headers, job_id, timeout=60)["status"] == "failed"
    # When the tenant reads its failures, Then the group is there with its timestamps
    groups = stack.client.get("/v1/jobs/failures", headers=headers).get_json()["groups"]
    assert [(g["error_code"], g["count"]) for g in groups] == [("provider_error", 1)]
    assert groups[0]["last_failed_at"].endswith("Z")
    # When it replays the group and the admission pass runs (this stack has no beat)
    answer = stack.client.post("/v1/jobs/retry", json=groups[0]["filter"], headers=headers)
    assert answer.status_code == 202 and answer.get_json()["requeued"] == 1, answer.get_data(as_text=True)
    with stack.app.app_context():
        assert admission.admit_once()["replay"] == 1
    # Then the job completes
    assert stack.wait(headers, job_id, timeout=60)["status"] == "completed"


def test_the_new_endpoints_are_documented_and_refuse_bad_requests_clearly(stack, tenant):
    # Given the OpenAPI document
    doc = stack.client.get("/openapi.json").get_json()
    replay_op = doc["paths"]["/v1/jobs/retry"]["post"]
    failures_op = doc["paths"]["/v1/jobs/failures"]["get"]
    # Then the replay is described by its request model and answers, the failures view by its query
    assert replay_op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/BulkReplay"}
    assert {"200", "202", "403", "422"} <= set(replay_op["responses"])
    assert {p["name"] for p in failures_op["parameters"]} == {"created_after", "created_before"}
    # And bad requests get the one error shape, never a 500
    for body, status in (({}, 422), ({"ids": ["nope"]}, 422), ({"status": ["queued"]}, 422),
                         ({"created_after": "yesterday"}, 422), ({"error_code": "x", "cursor": "zz"}, 422),
                         ({"error_code": "x", "limit": 5000}, 422), ({"tenant": "someone-else", "ids": []}, 403)):
        answer = stack.client.post("/v1/jobs/retry", json=body, headers=tenant)
        assert answer.status_code == status and "error" in answer.get_json(), (body, answer.get_data(as_text=True))
    assert stack.client.get("/v1/jobs/failures?created_after=never", headers=tenant).status_code == 422
    assert stack.client.get("/v1/jobs/failures").status_code == 401


def test_every_filter_narrows_the_replay_for_the_api_and_the_cli(stack, tenant):
    # Given a tenant's ended jobs that differ by status, provider and operation
    from pipeline.core.lifecycle import JobStatus
    from pipeline.store import jobs
    error = {"code": "provider_error", "message": "down", "retryable": True, "step": "generate"}

    def ended(operation: str, provider: str, status: JobStatus) -> str:
        spec = jobs.NewJob(tenant_id=tenant["X-Tenant"], operation=operation, providers=[provider], prompt="filters",
                           params=SMALL, inputs=None, timeout_s=30, deadline_s=60, max_attempts=1)
        with stack.app.app_context():
            job_id = jobs.create(spec).id
            assert jobs.transition(job_id, status, **({"error": error} if status == JobStatus.FAILED else {}))
        return job_id

    made = {"failed-generate-local": ended("generate", "local", JobStatus.FAILED),
            "failed-edit-local": ended("edit", "local", JobStatus.FAILED),
            "failed-generate-openai": ended("generate", "openai", JobStatus.FAILED),
            "canceled-generate-local": ended("generate", "local", JobStatus.CANCELED)}

    def matched(**flt) -> list[str]:
        answer = stack.client.post("/v1/jobs/retry", json={**flt, "ids": list(made.values()), "dry_run": True},
                                   headers=tenant)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return sorted(name for name, job_id in made.items() if job_id in {j["id"] for j in answer.get_json()["jobs"]})

    # When the replay is dry-run with each filter, Then exactly the jobs matching all of them are selected
    assert matched() == sorted(made)
    assert matched(provider="openai") == ["failed-generate-openai"]
    assert matched(operation="edit") == ["failed-edit-local"]
    assert matched(status=["canceled"]) == ["canceled-generate-local"]
    assert matched(status=["failed"], provider="local") == ["failed-edit-local", "failed-generate-local"]
    assert matched(status=["failed"], provider="local", operation="generate", error_code="provider_error") == [
        "failed-generate-local"]
    assert matched(error_code="unsafe_content") == []

    # And the operator CLI's options select the same, for one tenant
    cli = genline(stack, "jobs", "retry", "--tenant", tenant["X-Tenant"], "--status", "failed", "--provider", "local",
                  "--operation", "edit", "--dry-run")
    assert cli.returncode == 0 and "matched 1, would replay 1" in cli.stdout, cli.stdout + cli.stderr
    assert made["failed-edit-local"] in cli.stdout
    # And nothing moved
    assert all(stack.job(tenant, job_id)["status"] in ("failed", "canceled") for job_id in made.values())
