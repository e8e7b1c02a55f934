"""Two worker kinds (docs/workers.md): routing by step and provider kind, a pool that
cannot enforce a budget refuses its queue, post-generate steps ahead of any backlog,
and a whole I/O worker SIGKILLed with a hundred remote jobs in flight."""
from __future__ import annotations

import subprocess

import pytest

from pipeline.adapters import routing
from pipeline.core.lifecycle import Step
from tests import services
from tests.fake_providers import TOKEN, ImageServer

# --- routing -----------------------------------------------------------------------------------

@pytest.mark.parametrize("priority", ["high", "normal", "low"])
def test_steps_go_to_their_kinds_queue_at_the_jobs_priority(priority):
    assert routing.step_queue(Step.VALIDATE, priority, "local") == f"io.{priority}"
    assert routing.step_queue(Step.GENERATE, priority, "openai") == f"io.{priority}"
    assert routing.step_queue(Step.GENERATE, priority, "http") == f"io.{priority}"
    assert routing.step_queue(Step.GENERATE, priority, "local") == f"compute.{priority}"
    # and a generated job's upload and notify go ahead of everything, whatever its priority
    assert routing.step_queue(Step.UPLOAD, priority, "local") == routing.FINISH
    assert routing.step_queue(Step.NOTIFY, priority, "openai") == routing.FINISH


def test_unknown_or_in_process_providers_default_to_the_compute_kind():
    # diffusers (an in-process model) and any provider whose class says nothing run under prefork limits
    assert routing.kind_of(Step.GENERATE, "diffusers") == "compute"
    assert routing.kind_of(Step.GENERATE, "some-new-provider") == "compute"


def test_one_worker_on_every_queue_polls_them_high_before_normal_before_low():
    order = routing.ALL_QUEUES
    assert order[0] == routing.FINISH
    assert max(order.index("io.high"), order.index("compute.high")) < min(order.index("io.normal"), order.index("compute.normal"))
    assert max(order.index("io.normal"), order.index("compute.normal")) < min(order.index("io.low"), order.index("compute.low"))


@pytest.mark.parametrize("pool", ["gevent", "threads", "solo"])
def test_a_pool_without_time_limits_refuses_the_compute_queues_and_says_why(make_stack, pool):
    # Given a stack, when a worker without Celery's time limits is asked to consume a compute queue
    stack = make_stack()
    argv = services.worker_argv(concurrency=2, name=f"refuse-{pool}", queues="io.high,compute.normal")
    argv[argv.index("-P") + 1] = pool
    result = subprocess.run(argv, env=stack.env, cwd=services.ROOT, capture_output=True, text=True, timeout=60)
    # Then it exits at start with a message naming the queue, the pool and the reason
    assert result.returncode == 2, result.stderr[-2000:]
    assert "refusing to consume compute.normal" in result.stderr and "prefork" in result.stderr
    assert "Traceback" not in result.stderr


# --- a generated image is never lost to a queue -------------------------------------------------

def _generated(stack, job_id: str) -> bool:
    from pipeline.store import jobs
    with stack.app.app_context():
        return "generate" in (jobs.get(job_id).step_outputs or {})


def _after_generate_s(stack, job_id: str) -> float:
    """Seconds from the end of the job's generate to its failure (events and ``timing.generate_s``).

    Under load the generates of a backlog end later than their 2 s each, and one may end
    a moment before the deadline: its upload then fails however promptly it runs.
    """
    from pipeline.store import jobs
    events = stack.events(job_id)
    with stack.app.app_context():
        generate_s = jobs.get(job_id).timing["generate_s"]
    started = [e for e in events if e["type"] == "started" and e["data"].get("step") == "generate"][-1]
    failed = next(e for e in events if e["type"] == "failed")
    return (services.instant(failed["created_at"]) - services.instant(started["created_at"])).total_seconds() - generate_s


@pytest.mark.parametrize("layout", ["kinds", "all"])
def test_a_backlog_never_makes_a_generated_job_miss_its_deadline_at_upload(make_stack, layout):
    # Given 2 compute slots (an I/O worker beside them, or one worker on every queue)
    stack = make_stack()
    if layout == "kinds":
        stack.start_worker(kind="compute", concurrency=2, name="gpu")
        stack.start_worker(kind="io", concurrency=20, name="io")
    else:
        stack.start_worker(kind="all", concurrency=2, name="small")
    headers = stack.new_tenant()
    # When 8 jobs of 2 s each arrive at once with a deadline only the first 6 can meet
    body = {"prompt": "backlog", "params": {"size": "32x32", "simulate": {"latency_s": 2}},
            "budget": {"deadline_s": 7, "timeout_s": 3, "max_attempts": 1}}
    ids = [stack.submit(headers, body)["id"] for _ in range(8)]
    done = [stack.wait(headers, i, timeout=60) for i in ids]
    # Then every job that generated completed, unless its generate ended so close to the deadline
    # that the upload could not: no upload waited behind a generate of the backlog (2 s each)
    generated = [d for d in done if _generated(stack, d["id"])]
    assert len(generated) >= 4, [d["status"] for d in done]
    assert sum(d["status"] == "completed" for d in generated) >= 4, [(d["status"], d["error"]) for d in generated]
    for d in generated:
        if d["status"] != "completed":
            assert d["error"]["code"] == "deadline_exceeded" and d["error"]["step"] == "upload", d["error"]
            assert _after_generate_s(stack, d["id"]) < 2, (d["id"], _after_generate_s(stack, d["id"]))
    failed = [d for d in done if d["status"] != "completed"]
    assert all(d["error"]["step"] == "generate" for d in failed), [d["error"] for d in failed]


# --- recovery on the I/O kind --------------------------------------------------------------------

@pytest.fixture
def server():
    s = ImageServer().start()
    yield s
    s.stop()


@pytest.mark.slow
def test_a_whole_io_worker_killed_with_a_hundred_jobs_in_flight_all_resume_elsewhere(make_stack, server):
    # Given an I/O worker with 100 remote jobs waiting on a slow provider, and beat running the reaper
    stack = make_stack(GENLINE_HTTP_PROVIDER_URL=server.url + "/infer", GENLINE_HTTP_PROVIDER_TOKEN=TOKEN,
                       GENLINE_TENANT_CONCURRENCY=1000)
    first = stack.start_worker(kind="io", concurrency=200, name="io-a")
    stack.start_beat()
    headers = stack.new_tenant()
    # 30 s calls: all 100 submissions must land while the first call still waits, on a loaded machine too
    # (with 8 s calls, 100 submits at load 9 outlasted the first call, which then completed).
    body = {"prompt": "slow:30 fleet", "provider": "http", "budget": {"timeout_s": 45, "deadline_s": 180}}
    ids = [stack.submit(headers, body)["id"] for _ in range(100)]
    services.wait_for(lambda: len(server.seen("slow:30 fleet")) >= 100, 60, "100 calls in flight")
    assert not any(stack.job(headers, i)["status"] == "completed" for i in ids)

    # When the whole worker is SIGKILLed (a machine loss) and another I/O worker starts
    first.kill_group()
    stack.start_worker(kind="io", concurrency=200, name="io-b")

    # Then every job resumes there and completes
    done = [stack.wait(headers, i, timeout=120) for i in ids]
    assert all(d["status"] == "completed" for d in done), [(d["id"], d["error"]) for d in done if d["status"] != "completed"]
    assert len(server.seen("slow:30 fleet")) >= 200  # each was called again after the loss


def test_jobs_waiting_on_the_io_worker_hold_no_database_connection(make_stack, server):
    # Given an I/O worker whose database connections are named (libpq's PGAPPNAME)
    stack = make_stack(GENLINE_HTTP_PROVIDER_URL=server.url + "/infer", GENLINE_HTTP_PROVIDER_TOKEN=TOKEN,
                       GENLINE_TENANT_CONCURRENCY=1000)
    env = dict(stack.env, PGAPPNAME="genline-io-under-test")
    stack.processes.append(services.start_worker(env, stack.log_dir, kind="io", concurrency=100, name="io-conns"))
    headers = stack.new_tenant()

    # When 60 jobs wait on a slow provider at once
    ids = [stack.submit(headers, {"prompt": "slow:15 conns", "provider": "http"})["id"] for _ in range(60)]
    services.wait_for(lambda: len(server.seen("slow:15 conns")) >= 60, 60, "60 calls in flight")
    # and every one of them has had its lease renewed (the cancel watch passes several times meanwhile)
    from sqlalchemy import select, text

    from pipeline.store.models import Job, db

    def leases() -> dict:
        with stack.app.app_context():
            found: dict = dict(db.session.execute(select(Job.id, Job.lease_until).where(Job.id.in_(ids))).all())
            db.session.rollback()
        return found
    claimed = leases()
    services.wait_for(lambda: all(until and claimed[i] and until > claimed[i] for i, until in leases().items()), 30,
                      "a lease renewal of every waiting job")

    # Then the worker holds no more connections than its pool's size, far fewer than its waiting jobs
    with stack.app.app_context():
        held = db.session.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                                  {"name": "genline-io-under-test"}).scalar()
        db.session.rollback()
    assert 1 <= held <= 15, held
    assert all(stack.wait(headers, i, timeout=90)["status"] == "completed" for i in ids)
