"""Fixtures: a real stack per test session (own Redis, own Postgres database, a
prefork Celery worker) and a fresh tenant per test, so tests never share jobs.

Postgres missing: the Postgres tests fail in CI (CI=true) and skip locally.
"""
from __future__ import annotations

import itertools
import os
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests import pgcluster, services

TERMINAL = ("completed", "failed", "canceled")


def base_env(database_url: str, redis_url: str, storage_url: str, **extra) -> dict:
    """The environment of every process of one stack (web, worker, beat)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENLINE_", "DATABASE_URL", "REDIS_URL", "STORAGE_URL"))}
    env.update({
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "STORAGE_URL": storage_url,
        "SECRET_KEY": "test-secret-key",
        "GENLINE_ALLOW_SIMULATE": "1",
        "GENLINE_API_KEYS": "static-tenant:static-test-key",
        "GENLINE_LEASE_S": "3",
        "GENLINE_REAPER_INTERVAL_S": "1",
        "GENLINE_WEBHOOK_ALLOW_PRIVATE": "1",
        "GENLINE_LOG_LEVEL": "INFO",
        # Tests submit many jobs per key quickly; rate-limit tests set their own limit.
        "GENLINE_RATE_LIMIT": "100000/minute",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(services.ROOT),
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Stack:
    """One running genline: its env, an in-process Flask app and test client, its processes."""

    def __init__(self, env: dict, log_dir: Path, redis: services.RedisServer | None = None, layout: str = "all"):
        from pipeline.config import Config
        from web import create_app
        self.env, self.log_dir, self.redis = env, log_dir, redis
        self.layout = layout  # "all": one prefork worker per start_worker; "kinds": compute + I/O
        self.app = create_app(Config.from_env(env))
        self.client = self.app.test_client()
        self.processes: list[services.Process] = []

    def migrate(self) -> None:
        from flask_migrate import upgrade
        with self.app.app_context():
            upgrade()

    def start_worker(self, **kwargs) -> services.Process:
        """A worker; on the ``kinds`` layout, an I/O worker and then the compute worker (returned)."""
        if self.layout == "kinds" and "kind" not in kwargs:
            io_name = f"{kwargs.get('name') or 'w'}-io"
            self.processes.append(services.start_worker(self.env, self.log_dir, kind="io", concurrency=50, name=io_name))
            kwargs["kind"] = "compute"
        proc = services.start_worker(self.env, self.log_dir, **kwargs)
        self.processes.append(proc)
        return proc

    def start_beat(self) -> services.Process:
        proc = services.start_beat(self.env, self.log_dir)
        self.processes.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()

    def new_tenant(self, prefix: str = "t") -> dict:
        """A fresh tenant with its own key; returns request headers for it."""
        from web.keys import create_key
        tenant = f"{prefix}-{os.urandom(4).hex()}"
        with self.app.app_context():
            _row, key = create_key(tenant)
        return {"Authorization": f"Bearer {key}", "X-Tenant": tenant}

    def submit(self, headers: dict, body: dict | None = None, expect: int = 202, **kwargs) -> dict:
        response = self.client.post("/v1/jobs", json=body or {"prompt": "a lighthouse"}, headers=headers, **kwargs)
        assert response.status_code == expect, response.get_data(as_text=True)
        return response.get_json()

    def job(self, headers: dict, job_id: str) -> dict:
        response = self.client.get(f"/v1/jobs/{job_id}", headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def wait(self, headers: dict, job_id: str, statuses=TERMINAL, timeout: float = 60) -> dict:
        """Poll until the job's status is one of ``statuses``; fail with the worker log otherwise."""
        end = time.monotonic() + timeout
        job = None
        while time.monotonic() < end:
            job = self.job(headers, job_id)
            if job["status"] in statuses:
                return job
            time.sleep(0.05)
        logs = "\n".join(f"--- {p.name} ---\n{p.log()[-2000:]}" for p in self.processes)
        raise AssertionError(f"job {job_id} still {job and job['status']} after {timeout}s\n{logs}")

    def events(self, job_id: str) -> list[dict]:
        from pipeline.store import jobs
        with self.app.app_context():
            return jobs.events_after(job_id)


_private_pg: pgcluster.PrivateCluster | None = None


def pytest_configure(config) -> None:
    """Start the run's private Postgres (tests/pgcluster.py) once, in the controller.

    xdist workers start after this and inherit ``GENLINE_TEST_PG`` from our
    environment; with ``-n 0`` the tests run here and read ``services.PG_ADMIN_URL``.
    ``GENLINE_TEST_PG`` set by the caller wins, and so does ``GENLINE_TEST_PG=system``
    (the machine's Postgres on 127.0.0.1:5432, as before).
    """
    global _private_pg
    if hasattr(config, "workerinput") or os.environ.get("GENLINE_TEST_PG"):
        if os.environ.get("GENLINE_TEST_PG") == "system":
            os.environ.pop("GENLINE_TEST_PG")
            services.PG_ADMIN_URL = services.SYSTEM_PG_URL
        return
    if not pgcluster.PrivateCluster.possible():
        return
    _private_pg = pgcluster.PrivateCluster().start()
    os.environ["GENLINE_TEST_PG"] = services.PG_ADMIN_URL = _private_pg.admin_url


def pytest_unconfigure(config) -> None:
    if _private_pg is not None:
        _private_pg.stop()


def _postgres_or_skip() -> None:
    try:
        services.ensure_postgres()
    except services.ServiceMissing as exc:
        pytest.fail(str(exc)) if services.IN_CI else pytest.skip(f"{exc} (this fails in CI)")


@pytest.fixture(scope="session")
def redis_server():
    server = services.RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_database():
    """A fresh Postgres database for this session (dropped afterwards)."""
    _postgres_or_skip()
    url = services.create_database()
    yield url
    services.drop_database(url)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def stack(pg_database, redis_server, tmp_path_factory, log_dir):
    """The shared Postgres stack with one prefork worker (-c 2)."""
    storage = tmp_path_factory.mktemp("outputs").as_uri()
    s = Stack(base_env(pg_database, redis_server.url, storage), log_dir, redis_server)
    s.migrate()
    s.start_worker(concurrency=2, name="shared")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def kinds_stack(pg_database, tmp_path_factory, log_dir):  # pg_database: skip (or fail in CI) without Postgres
    """A Postgres stack run by the two worker kinds (docs/workers.md): a prefork compute
    worker (-c 2) and a gevent I/O worker (-c 50), each on its own queues."""
    with private_stack(tmp_path_factory.mktemp("kinds"), log_dir) as s:
        s.start_worker(kind="compute", concurrency=2, name="compute")
        s.start_worker(kind="io", concurrency=50, name="io")
        yield s


@pytest.fixture(scope="session")
def sqlite_stack(redis_server, tmp_path_factory, log_dir):
    """The same stack on SQLite (the embedded default), on its own Redis database number."""
    root = tmp_path_factory.mktemp("sqlite")
    env = base_env(f"sqlite:///{root / 'genline.db'}", redis_server.url.replace("/0", "/1"), (root / "outputs").as_uri())
    s = Stack(env, log_dir)
    s.migrate()
    s.start_worker(concurrency=2, name="sqlite")
    yield s
    s.stop()


@pytest.fixture
def tenant(stack) -> dict:
    """Headers of a fresh tenant on the shared stack."""
    return stack.new_tenant()


@contextmanager
def private_stack(storage_dir: Path, log_dir: Path, worker: dict | None = None, layout: str = "all", **extra):
    """A stack with its own Redis and Postgres database, torn down afterwards.

    ``worker`` (start_worker's arguments) starts one prefork worker at once.
    """
    # Each piece is torn down even when a later one fails to start (a database that
    # cannot be made must not leave this Redis running).
    with ExitStack() as cleanup:
        redis = services.RedisServer().start()
        cleanup.callback(redis.stop)
        db_url = services.create_database()
        cleanup.callback(services.drop_database, db_url)
        s = Stack(base_env(db_url, redis.url, storage_dir.as_uri(), **extra), log_dir, redis, layout)
        cleanup.callback(_dispose_engine, s)
        cleanup.callback(s.stop)
        s.migrate()
        if worker is not None:
            s.start_worker(**worker)
        yield s


def _dispose_engine(s: Stack) -> None:
    with s.app.app_context():
        from pipeline.store.models import db
        db.engine.dispose()


@pytest.fixture
def worker_layout() -> str:
    """The worker layout of ``make_stack``'s stacks: ``all`` (one prefork worker on every
    queue). A module overrides it with ``params=["all", "kinds"]`` to run on both."""
    return "all"


@pytest.fixture
def make_stack(pg_database, tmp_path, log_dir, worker_layout):
    """Build a private stack (own Redis, own database) for tests that kill or restart things."""
    made = itertools.count()
    with ExitStack() as stacks:
        def build(**extra) -> Stack:
            extra.setdefault("layout", worker_layout)
            return stacks.enter_context(private_stack(tmp_path / f"out{next(made)}", log_dir, **extra))
        yield build


SLOWEST_FIRST = (
    "test_platform_sigterm.py::test_sigterm_to_every_process", "test_platform_rehearsal.py::test_the_platform_rehearsal",
    "test_providers_e2e.py", "test_redis_sentinel.py",
    "test_dev_stack.py", "multihost/test_lost_host.py", "test_cancel_retry.py", "multihost/test_fencing.py",
    "test_bench_waiting.py", "test_worker_kinds.py::test_a_whole_io_worker_killed", "test_platform_rehearsal.py",
    "test_demo_browser.py", "test_recovery_times.py::test_whole_worker_sigkilled", "multihost/test_database_link_down.py",
    "test_budgets_e2e.py", "test_client_python.py", "test_client_js.py", "test_diffusers_e2e.py",
    "test_full_redis.py::test_a_full_redis", "test_recovery.py::test_paas_sigterm", "test_events_resilience.py",
    "test_observability.py", "test_production_config.py", "test_worker_kinds.py::test_jobs_waiting_on_the_io_worker",
    "test_recovery.py::test_countdown_retry", "multihost/test_hosts_throughput_smoke.py", "test_events_concurrency.py",
    "test_recovery.py::test_whole_worker_killed", "test_recovery.py::test_redis_restarted", "test_replay.py::test_an_outage",
    "test_flower_states.py", "test_recovery_times.py::test_active_beat", "test_recovery.py::test_graceful_sigterm",
    "test_openapi.py", "test_replay.py::test_a_replay_survives", "test_recovery.py::test_worker_rides_out",
    "test_redis_tls.py", "test_concurrency.py::test_a_tenant_never", "test_metrics.py::test_a_worker_serves",
    "test_bench_smoke.py", "test_webhooks.py", "test_worker_kinds.py::test_a_backlog", "test_secrets.py",
    "test_periodic.py", "test_eta.py::test_estimates",
)
"""The units of work that take 17 s or more, longest first (``--durations=0``: a grouped
file's tests summed, a test of a ``SPLIT_PER_TEST`` file on its own, each parameter apart).

pytest-xdist hands units out in this order (``--dist loadgroup --no-loadscope-reorder``;
its default reorder puts the units with the most tests first), so the longest go first
and none starts last to run alone at the end (longest-processing-time-first
scheduling). An entry is a file or a ``file::test`` prefix; what is not listed keeps its
place after these.
"""

SPLIT_PER_TEST = (
    "test_recovery.py", "test_platform_sigterm.py", "test_platform_rehearsal.py", "test_worker_kinds.py",
    "test_concurrency.py", "test_recovery_times.py", "test_replay.py", "test_metrics.py", "test_lost_messages.py",
    "test_eta.py", "test_full_redis.py",
)
"""Long files whose tests each build their own stack (no module-scoped fixture): their
tests are handed out one by one, so one such file no longer takes one worker for 3-5
minutes. Every other file is one ``xdist_group``, handed out whole, so that the tests
sharing a module's stack run beside it."""


def _slowness_rank(item) -> int:
    nodeid = item.nodeid.removeprefix("tests/")
    for rank, name in enumerate(SLOWEST_FIRST):
        if nodeid.startswith(name):
            return rank
    return len(SLOWEST_FIRST)


def _group(nodeid: str) -> str | None:
    """The ``xdist_group`` of a test: its file, unless the file is in ``SPLIT_PER_TEST``."""
    path = nodeid.split("::", 1)[0]
    return None if path.removeprefix("tests/") in SPLIT_PER_TEST else path


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the node ids
def pytest_collection_modifyitems(items) -> None:
    items.sort(key=_slowness_rank)  # stable: within a file and among the rest, the order is kept
    for item in items:
        group = _group(item.nodeid)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_xdist_node_collection_finished(node, ids) -> None:
    """In the controller, with ``--dist loadgroup``: stop when the groups did not reach xdist.

    xdist carries a test's group in its node id (``…@group``); on pytest 9.2 that stopped
    working (pytest-xdist#1386) and nothing failed: the tests were spread one by one, each
    worker built its own copy of a module's stack, and the suite ran a third longer.
    """
    if node.config.getoption("dist") != "loadgroup":
        return
    grouped = [nodeid for nodeid in ids if _group(nodeid) is not None]
    if grouped and not any("@" in nodeid for nodeid in grouped):
        pytest.exit("pytest-xdist's --dist loadgroup is not grouping tests on this pytest (pytest-xdist#1386): "
                    "install what setup.cfg's test extra pins (pytest<9.2)", returncode=4)
