"""The real services of genline started on hosts of the multi-host bed: a private
Postgres cluster, Redis, moto's S3 server, gunicorn, the worker kinds and beat, and
the recorder (remote provider + webhook receiver). Every one listens on its host's
address, on a fixed port (each host is its own network namespace).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING

import boto3
import psycopg2
import psycopg2.extras
import redis as redis_lib
import requests

from tests import pgcluster, services
from tests.conftest import base_env

if TYPE_CHECKING:
    from tests.multihost.bed import Host, Process

PROVIDER_TOKEN = "multihost-provider-token"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
AWS_CLIENT = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def _pg_bin(name: str) -> str:
    found = pgcluster.find(name)
    if not found:
        services.missing(f"no {name}: apt-get install -y postgresql")
    return str(found)


@contextmanager
def db_cursor(database_url: str):
    """A dict cursor on the bed's database, autocommit, closed afterwards."""
    conn = psycopg2.connect(database_url, connect_timeout=5, cursor_factory=psycopg2.extras.RealDictCursor)
    conn.autocommit = True
    try:
        yield conn.cursor()
    finally:
        conn.close()


def start_postgres(host: Host) -> str:
    """A private Postgres cluster on ``host`` (initdb as user postgres); returns a database URL."""
    data = host.tmp / "pgdata"
    data.mkdir()
    shutil.chown(host.tmp, "postgres")
    os.chmod(host.tmp, 0o755)
    shutil.chown(data, "postgres")
    subprocess.run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--",
                    _pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True)
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write("host all all 0.0.0.0/0 trust\n")
    host.spawn([_pg_bin("postgres"), "-D", str(data), "-c", f"listen_addresses={host.address}",
                "-c", "port=5432", "-c", f"unix_socket_directories={data}", "-c", "fsync=off",
                "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200"],
               user="postgres", log="postgres")
    admin = f"postgresql://postgres@{host.address}:5432/postgres"
    services.wait_for(lambda: psycopg2.connect(admin, connect_timeout=2).close() or True, 30, "bed postgres")
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE genline")
    conn.close()
    return f"postgresql://postgres@{host.address}:5432/genline"


def start_redis(host: Host) -> str:
    """A redis-server on ``host`` without persistence; returns its URL."""
    host.spawn([services.redis_server_binary(), "--bind", host.address, "--port", "6379", "--protected-mode", "no",
                "--save", "", "--appendonly", "no", "--dir", str(host.tmp), "--loglevel", "warning"], log="redis")
    client = redis_lib.Redis(host=host.address, port=6379, socket_timeout=2)
    services.wait_for(client.ping, 20, "bed redis")
    return f"redis://{host.address}:6379/0"


def start_s3(host: Host, bucket: str = "genline") -> tuple[str, str]:
    """moto's S3 server on ``host`` with ``bucket`` made; returns (STORAGE_URL, S3_ENDPOINT_URL)."""
    moto = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
    if not moto:
        services.missing("no moto_server: pip install 'moto[server]' (make install does)")
    host.spawn([str(moto), "-H", host.address, "-p", "5000"], env=dict(os.environ, **AWS_ENV), log="s3")
    endpoint = f"http://{host.address}:5000"
    services.wait_for(lambda: requests.get(endpoint, timeout=2).status_code < 500, 30, "bed S3")
    boto3.client("s3", endpoint_url=endpoint, **AWS_CLIENT).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/outputs", endpoint


def start_recorder(host: Host, port: int = 8080) -> tuple[str, Process]:
    """The recorder (remote provider at ``/infer``, webhook receiver at ``/hook``); returns its base URL."""
    out = host.tmp / "recorded.jsonl"
    out.touch()
    proc = host.spawn([sys.executable, "-m", "tests.multihost.recorder", host.address, str(port), str(out),
                       PROVIDER_TOKEN], env=dict(os.environ, PYTHONPATH=str(services.ROOT)), log="recorder")
    proc.recorded = out  # type: ignore[attr-defined]
    proc.wait_for_log("recorder listening", 20)
    return f"http://{host.address}:{port}", proc


def stack_env(database_url: str, redis_url: str, storage_url: str, s3_endpoint: str | None = None,
              **extra) -> dict:
    """The environment of every genline process of the bed, with genline's DEFAULT lease and
    reaper settings (the tests' usual 3 s / 1 s only where ``extra`` sets them)."""
    env = base_env(database_url, redis_url, storage_url, **AWS_ENV)
    env.pop("GENLINE_LEASE_S")
    env.pop("GENLINE_REAPER_INTERVAL_S")
    if s3_endpoint:
        env["S3_ENDPOINT_URL"] = s3_endpoint
    env.update({k: str(v) for k, v in extra.items()})
    return env


def migrate(host: Host, env: dict) -> None:
    """The Procfile's release step, run on ``host``."""
    proc = host.spawn([sys.executable, "-m", "flask", "--app", "web", "db", "upgrade"], env=env, log="release")
    if proc.proc is None or proc.proc.wait(120) != 0:
        raise RuntimeError(f"migrations failed:\n{proc.log_tail()}")


def start_web(host: Host, env: dict) -> str:
    """gunicorn (the Procfile's web) on ``host``; returns its base URL, reachable from the test process."""
    host.spawn([sys.executable, "-m", "gunicorn", "-c", str(services.ROOT / "deploy" / "gunicorn.conf.py"),
                "--bind", f"{host.address}:8000", "--workers", "1", "--worker-class", "gevent",
                "web:create_app()"], env=env, log="web")
    url = f"http://{host.address}:8000"
    services.wait_for(lambda: requests.get(f"{url}/healthz", timeout=2).ok, 60, "bed gunicorn")
    return url


def start_worker(host: Host, kind: str, env: dict, concurrency: int | None = None, queues: str | None = None,
                 ready: bool = True) -> Process:
    """A worker of ``kind`` ("io": gevent on the I/O queues, "compute": prefork on the compute
    queues, "all") on ``host``, named ``<kind>@<host>``; ``queues`` instead of its kind's.
    ``ready``: return once it is ready (else at once: ``proc.wait_for_log("ready.")``)."""
    concurrency = concurrency or (50 if kind == "io" else 2)
    argv = services.worker_argv(concurrency=concurrency, name=f"{kind}-{host.name}", kind=kind, queues=queues)
    argv[argv.index("-n") + 1] = f"{kind}@{host.name}"
    proc = host.spawn(argv, env=env, log=f"worker-{kind}")
    if ready:
        proc.wait_for_log("ready.", 90)
    return proc


def start_beat(host: Host, env: dict, active: bool = True) -> Process:
    """A beat on ``host``; ``active``: wait until it holds the schedule's lock."""
    proc = host.spawn(services.beat_argv(), env=env, log="beat")
    proc.wait_for_log("beat: Acquired lock" if active else "beat: Starting", 60)
    return proc
