"""The platform rehearsal: genline as a platform runs it, from a clean clone.

A plain ``pip install`` into a new venv, configuration by environment only
(``postgres://`` DATABASE_URL, ``rediss://`` REDIS_URL to a TLS-only Redis,
``PORT``), the checkout read-only with only a temp dir writable; ``release``,
then web, worker, two beats and Flower exactly as the Procfile says. Jobs go in
over HTTP while each process kind in turn is SIGKILLed and started again; every
job must end completed, none lost, none doubled. Also: docs/deployment.md's honcho
command runs the stack past ``release``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import pytest
import requests

from pipeline.tooling.localproc import Process
from tests import services
from tests.procfile import ROOT, docs_command, procfile
from tests.tlsredis import TLSRedisServer

pytestmark = pytest.mark.slow
NOBODY = 65534
SECRET = "5b1e9c0d7a3f2468ace13579bdf02468ace13579bdf0a1b2"


def _postgres_url(sqlalchemy_url: str) -> str:
    """The URL as Heroku and Render hand it out."""
    return "postgres://" + sqlalchemy_url.split("://", 1)[1]


def _run_as_platform_user(argv: list[str]) -> list[str]:
    # Root ignores file modes: run as nobody so the read-only checkout really is.
    if os.geteuid() == 0:
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"] + argv
    return argv


def _platform_python() -> str:
    """A Python 3.11 the platform user can run (pyenv's under /root is out of nobody's reach)."""
    if os.geteuid() == 0:
        for candidate in ("/usr/bin/python3.11", "/usr/local/bin/python3.11"):
            if os.path.exists(candidate):
                return candidate
        services.missing("running as root needs a system python3.11 for the unprivileged platform user")
    return sys.executable


class Rehearsal:
    """A clean clone installed in a new venv, and the processes started from its Procfile."""

    def __init__(self, base: Path):
        self.base, self.app, self.venv = base, base / "app", base / "venv"
        self.writable, self.logs = base / "writable", base / "logs"
        self.running: dict[str, list[Process]] = {}

    def install(self, how: str) -> None:
        """Install as a platform does: ``pip install .``; the pins then the package (the Dockerfile,
        Render); or the pins alone, the code run from the checkout (Heroku's Python buildpack)."""
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(self.app)], check=True)
        subprocess.run([_platform_python(), "-m", "venv", str(self.venv)], check=True)
        pip = [str(self.venv / "bin" / "pip"), "install", "--quiet"]
        pins = pip + ["-r", str(self.app / "requirements.txt")]
        steps = {"pip-install-dot": [pip + [str(self.app)]],
                 "requirements-then-package": [pins, pip + ["--no-deps", str(self.app)]],
                 "requirements-only": [pins]}[how]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, done.stderr[-3000:]
        subprocess.run(["chmod", "-R", "a-w", str(self.app)], check=True)
        self.installed_state = self.checkout_state()
        for path in (self.writable, self.writable / "tmp", self.logs):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, NOBODY, NOBODY) if os.geteuid() == 0 else None

    def checkout_state(self) -> str:
        """Every file in the checkout, tracked or not, with its size and time."""
        return subprocess.run(["bash", "-c", "find . -path ./.git -prune -o -printf '%p %s %T@\\n' | sort"],
                              cwd=self.app, capture_output=True, text=True, check=True).stdout

    def env(self, **config) -> dict:
        """The whole environment: nothing inherited but a plain PATH."""
        return {"PATH": f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(self.writable),
                "TMPDIR": str(self.writable / "tmp"), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", **config}

    def start(self, name: str, env: dict) -> Process:
        argv = _run_as_platform_user(["bash", "-c", "exec " + procfile(self.app)[name]])
        proc = Process(name, argv, env, self.logs, cwd=self.app).start()
        self.running.setdefault(name, []).append(proc)
        return proc

    def stop(self) -> None:
        for procs in self.running.values():
            for proc in procs:
                proc.stop(10)


def _wait_http(url: str, what: str, timeout: float = 60, **kwargs) -> None:
    services.wait_for(lambda: requests.get(url, timeout=2, **kwargs).ok, timeout, what, 0.2)


@pytest.fixture
def rehearsal():
    base = Path(tempfile.mkdtemp(prefix="genline-rehearsal-"))
    os.chmod(base, 0o755)
    r = Rehearsal(base)
    yield r
    r.stop()
    subprocess.run(["chmod", "-R", "u+w", str(base)])
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.timeout(1200)
# The pins-then-package install of the Dockerfile and Render differs from these two only by
# `pip install --no-deps .`; GENLINE_REHEARSE_ALL=1 runs it too (about 75 s more).
@pytest.mark.parametrize("how", ["pip-install-dot", "requirements-only",
                                 pytest.param("requirements-then-package", marks=pytest.mark.skipif(
                                     not os.environ.get("GENLINE_REHEARSE_ALL"),
                                     reason="covered by the other two; GENLINE_REHEARSE_ALL=1 runs it"))])
def test_the_platform_rehearsal_loses_and_doubles_nothing(rehearsal, how):
    if subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "setup.cfg", "Procfile", "pipeline", "web",
                       "deploy", "requirements.txt"], capture_output=True, text=True).stdout.strip():
        services.missing("commit first: the rehearsal installs from a clean clone")
    # Given a clean clone installed with plain pip into a new venv, read-only
    rehearsal.install(how)
    db_url = services.create_database()
    redis = TLSRedisServer().start()
    port, flower_port = services.free_port(), services.free_port()
    env = rehearsal.env(
        GENLINE_PRODUCTION="1", SECRET_KEY=SECRET, GENLINE_DEFAULT_PROVIDER="local",
        DATABASE_URL=_postgres_url(db_url), REDIS_URL=redis.url, PORT=str(port), GENLINE_PUBLIC_URL=f"http://127.0.0.1:{port}",
        STORAGE_URL=(rehearsal.writable / "outputs").as_uri(), GENLINE_VAR_DIR=str(rehearsal.writable / "var"),
        GENLINE_API_KEYS="rehearsal:rk-rehearsal-key", GENLINE_ALLOW_SIMULATE="1",
        GENLINE_LEASE_S="3", GENLINE_REAPER_INTERVAL_S="1", GENLINE_RATE_LIMIT="100000/minute",
        FLOWER_PORT=str(flower_port), FLOWER_BASIC_AUTH="ops:rehearsal-pw", WEB_CONCURRENCY="1",
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": "Bearer rk-rehearsal-key"}
    try:
        # When release runs, then every process of the Procfile (two beats)
        release = rehearsal.start("release", env)
        assert release.proc.wait(120) == 0, release.log_tail()

        def start(name: str) -> Process:
            proc = rehearsal.start(name, env)
            ready = {"web": lambda: _wait_http(f"{base}/readyz", "web ready"),
                     "worker": lambda: proc.wait_for_log("ready.", 90),
                     "compute": lambda: proc.wait_for_log("ready.", 90),
                     "beat": lambda: proc.wait_for_log("beat: Starting", 60),
                     "flower": lambda: _wait_http(f"http://127.0.0.1:{flower_port}/healthcheck", "flower")}[name]
            ready()
            return proc

        for name in ("web", "worker", "compute", "beat", "beat", "flower"):
            start(name)
        submitted = []

        def submit(count: int) -> None:
            for _ in range(count):
                response = requests.post(f"{base}/v1/jobs", headers=headers, timeout=10, json={
                    "prompt": f"rehearsal {len(submitted)}", "params": {"simulate": {"latency_s": 2}}})
                assert response.status_code == 202, response.text
                submitted.append(response.json()["id"])

        submit(6)
        # and each process kind in turn is SIGKILLed (mid-generate for the compute worker) and started again
        for kind in ("compute", "worker", "web", "beat", "flower"):
            time.sleep(1.0)
            victim = rehearsal.running[kind][0 if kind == "beat" else -1]
            victim.kill_group()
            if kind == "beat":
                rehearsal.running["beat"].remove(victim)
            start(kind)
            submit(3)
        # Then every job ends completed
        deadline = time.monotonic() + 240
        pending = set(submitted)
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                job = requests.get(f"{base}/v1/jobs/{job_id}", headers=headers, timeout=10).json()
                if job["status"] in ("completed", "failed", "canceled"):
                    assert job["status"] == "completed", job
                    pending.discard(job_id)
            time.sleep(0.5)
        logs = "\n".join(f"--- {n} ---\n{p.log_tail(1500)}" for n, ps in rehearsal.running.items() for p in ps)
        assert not pending, f"still active: {pending}\n{logs}"
        # and none was lost or doubled: one job row each, one completed event each, one output each
        conn = psycopg2.connect(db_url)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT id, status, outputs FROM jobs")
                rows = {row[0]: row for row in cur.fetchall()}
                cur.execute("SELECT job_id, count(*) FROM job_events WHERE type = 'completed' GROUP BY job_id")
                completed = dict(cur.fetchall())
        finally:
            conn.close()
        assert set(rows) == set(submitted) and len(submitted) == 6 + 3 * 5
        assert completed == {job_id: 1 for job_id in submitted}
        assert all(len(rows[job_id][2]) == 1 for job_id in submitted)
        # and nothing wrote into the checkout after the install
        assert rehearsal.checkout_state() == rehearsal.installed_state
    finally:
        rehearsal.stop()
        redis.stop()
        services.drop_database(db_url)


@pytest.mark.timeout(300)
def test_the_deployment_pages_honcho_command_keeps_the_stack_up_after_release(tmp_path, log_dir):
    command = docs_command("honcho start release")
    db_url = services.create_database()
    redis = services.RedisServer().start()
    port, flower_port = services.free_port(), services.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENLINE_", "DATABASE_URL", "REDIS_URL"))}
    env.update(PATH=os.path.dirname(sys.executable) + os.pathsep + env["PATH"], DATABASE_URL=_postgres_url(db_url),
               REDIS_URL=redis.url, PORT=str(port), FLOWER_PORT=str(flower_port), FLOWER_BASIC_AUTH="ops:pw",
               GENLINE_VAR_DIR=str(tmp_path), STORAGE_URL=(tmp_path / "out").as_uri(), PYTHONUNBUFFERED="1")
    # When docs/deployment.md's command runs in the checkout
    honcho = Process("honcho", ["bash", "-c", command], env, log_dir, cwd=ROOT).start()
    try:
        _wait_http(f"http://127.0.0.1:{port}/readyz", "web from honcho", 90)
        _wait_http(f"http://127.0.0.1:{flower_port}/healthcheck", "flower from honcho", 60)
        honcho.wait_for_log("beat: Starting", 30)
        honcho.wait_for_log("ready.", 60)
        # Then, well after release exited, everything still runs
        services.assert_stays(lambda: honcho.proc.poll() is None, 10, "honcho running")
        assert honcho.proc.poll() is None, honcho.log_tail()
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok
        assert requests.get(f"http://127.0.0.1:{flower_port}/healthcheck", timeout=5).ok
    finally:
        honcho.stop(20)
        redis.stop()
        services.drop_database(db_url)
