"""genline across a bed: a data host (Postgres, Redis, S3, and the recorder as remote
provider and webhook receiver), a web host (gunicorn and beat) and worker hosts, each
running an I/O worker and a compute worker (docs/workers.md).

A worker host can start on *standby*: its workers run but consume only a queue of
their own until ``activate`` points them at their kind's queues (Celery's remote
control), so a test knows which host took which job without racing worker start-up.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import boto3

from pipeline.adapters import routing
from pipeline.config import Config
from pipeline.store.models import db
from tests.multihost import bed as mh
from tests.multihost.api import Api
from tests.multihost.hostservices import db_cursor
from web import create_app

KINDS = {"io": routing.IO_QUEUES, "compute": routing.COMPUTE_QUEUES}


class Cluster:
    """One genline on a bed; ``workers``: the worker hosts' names, started by ``add_workers``."""

    def __init__(self, bed: mh.Bed, workers: tuple[str, ...] = (), standby: bool = False, s3_host: bool = False,
                 **env):
        """``workers``: worker hosts to start with (``add_workers``); ``s3_host``: the bucket on a
        host of its own, so a test can cut a worker off storage alone. Independent services
        start side by side: on a busy machine each one's start is mostly waiting."""
        self.bed = bed
        self.data, self.web = bed.host("data"), bed.host("web")
        self.s3 = bed.host("s3") if s3_host else self.data
        self.workers: dict[str, dict[str, mh.Process]] = {}
        self._app = None
        with ThreadPoolExecutor(4) as pool:
            db, redis = pool.submit(mh.start_postgres, self.data), pool.submit(mh.start_redis, self.data)
            s3, recorder = pool.submit(mh.start_s3, self.s3), pool.submit(mh.start_recorder, self.data)
            provider, self.recorder = recorder.result()
            self.env = mh.stack_env(db.result(), redis.result(), *s3.result(),
                                    GENLINE_HTTP_PROVIDER_URL=f"{provider}/infer",
                                    GENLINE_HTTP_PROVIDER_TOKEN=mh.PROVIDER_TOKEN, GENLINE_TENANT_CONCURRENCY=1000,
                                    **env)
        self.hook_url = f"{provider}/hook"
        mh.migrate(self.web, self.env)
        with ThreadPoolExecutor(3) as pool:
            web, beat = pool.submit(mh.start_web, self.web, self.env), pool.submit(mh.start_beat, self.web, self.env)
            if workers:
                self.add_workers(*workers, standby=standby)
            self.api, self.beat = Api(web.result()), beat.result()

    def add_workers(self, *names: str, standby: bool = False, io_concurrency: int = 50) -> list[mh.Host]:
        """Worker hosts ``names``, an I/O and a compute worker on each (started side by side);
        ``standby``: consuming only a queue of their own until ``activate``."""
        hosts = [self.bed.host(name) for name in names]
        for host in hosts:
            queue = f"standby.{host.name}" if standby else None
            self.workers[host.name] = {
                "io": mh.start_worker(host, "io", self.env, io_concurrency, queues=queue, ready=False),
                "compute": mh.start_worker(host, "compute", self.env, 2, queues=queue, ready=False)}
        for host in hosts:
            for proc in self.workers[host.name].values():
                proc.wait_for_log("ready.", 120)
        return hosts

    def control(self):
        """Celery's remote control, through genline's own Celery app (built once, in this process)."""
        if self._app is None:
            self._app = create_app(Config.from_env(self.env))
        return self._app.extensions["celery"].control

    def activate(self, host: mh.Host) -> None:
        """Point ``host``'s workers at their kind's queues (from standby)."""
        control = self.control()
        for kind, queues in KINDS.items():
            for queue in queues:
                replies = control.add_consumer(queue, destination=[f"{kind}@{host.name}"], reply=True, timeout=10)
                assert replies, f"{kind}@{host.name} did not answer add_consumer {queue}"

    def standby(self, host: mh.Host) -> None:
        """Stop ``host``'s workers taking new messages (what they run goes on)."""
        control = self.control()
        for kind, queues in KINDS.items():
            for queue in queues:
                replies = control.cancel_consumer(queue, destination=[f"{kind}@{host.name}"], reply=True, timeout=10)
                assert replies, f"{kind}@{host.name} did not answer cancel_consumer {queue}"

    # -- what happened, read from the data host --------------------------------------------

    def db(self):
        return db_cursor(self.env["DATABASE_URL"])

    def rows(self, ids: list[str]) -> dict[str, dict]:
        with self.db() as cur:
            cur.execute("SELECT * FROM jobs WHERE id = ANY(%s)", (ids,))
            return {r["id"]: r for r in cur.fetchall()}

    def events(self, job_id: str) -> list[dict]:
        with self.db() as cur:
            cur.execute("SELECT seq, type, data, created_at FROM job_events WHERE job_id = %s ORDER BY seq", (job_id,))
            return cur.fetchall()

    def claimed_at(self, job_id: str, step: str, after: datetime) -> datetime | None:
        """When ``step`` of the job was claimed (its ``started`` event) after ``after``, if it was."""
        for event in self.events(job_id):
            at = event["created_at"]
            at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)  # stored as naive UTC
            if event["type"] == "started" and event["data"].get("step") == step and at > after:
                return at
        return None

    def held_by(self, host: mh.Host, ids: list[str], step: str) -> set[str]:
        """The jobs in ``step`` whose lease is held by a task ``host``'s workers received."""
        logs = self.worker_logs(host)
        return {i for i, r in self.rows(ids).items()
                if r["step"] == step and r["lease_owner"] and f"[{r['lease_owner']}] received" in logs}

    def bucket(self):
        """A boto3 S3 client of the bed's bucket (``genline``)."""
        return boto3.client("s3", endpoint_url=self.env["S3_ENDPOINT_URL"], **mh.AWS_CLIENT)

    def hooks(self, job_id: str) -> list[dict]:
        """The webhook deliveries the recorder received for ``job_id`` (their JSON bodies)."""
        bodies = [json.loads(h["body"]) for h in self.recorded("hook")]
        return [b for b in bodies if b["data"]["job"]["id"] == job_id]

    def worker_logs(self, host: mh.Host) -> str:
        return "".join(proc.log() for proc in self.workers[host.name].values())

    def recorded(self, kind: str) -> list[dict]:
        lines = self.recorder.recorded.read_text().splitlines()  # type: ignore[attr-defined]
        return [r for r in map(json.loads, lines) if r["kind"] == kind]

    def close(self) -> None:
        if self._app is not None:
            self._app.extensions["celery"].close()  # its broker connections, to hosts about to vanish
            with self._app.app_context():
                db.engine.dispose()
