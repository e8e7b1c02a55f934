"""Postgres gone for 20 s, across real network boundaries (tests/multihost/bed.py): the
database alone on host "db" (Redis, S3 and the remote provider on "data"), the web and
beat on "web", an I/O and a compute worker on each of hosts "a" and "b". Under load
(jobs generating on both kinds, submissions going on), the db host's link goes down:
the API answers 503 with ``Retry-After`` within seconds, never hangs; once the link is
back every accepted job ends completed, once, with its outputs, and new submissions
work again. A link that goes down sends no reset: without genline's link timeouts
(pipeline/store/dblink.py) a request waited for TCP to give up, minutes.

Prints each request's latency while the database was gone (the figures of
docs/recovery.md): ``pytest -n 0 -s tests/multihost/test_database_link_down.py``.
"""
from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass

import boto3
import psycopg2
import pytest
import requests

from tests import services
from tests.multihost import bed as mh

OUTAGE_S = 20
LATENCY_S = 3  # each provider call
LINK_TIMEOUT_S = 5  # GENLINE_DB_LINK_TIMEOUT_S's default, the longest a request should wait on a dead link
CLIENT_TIMEOUT_S = 3 * LINK_TIMEOUT_S  # a request still unanswered after this hung
KEY = "static-test-key"


@dataclass
class Answer:
    """One request: when it started and ended (monotonic), and what came back."""

    what: str
    started: float
    ended: float
    status: int | None  # None: no answer within CLIENT_TIMEOUT_S
    retry_after: str | None = None
    code: str | None = None
    job_id: str | None = None


class Client:
    """A tenant submitting and reading jobs, as a client that retries a 503 with the same Idempotency-Key."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {KEY}"
        self.answers: list[Answer] = []
        self.accepted: dict[str, str] = {}  # Idempotency-Key -> job id
        self._lock = threading.Lock()

    def _call(self, what: str, method: str, path: str, **kwargs) -> Answer:
        started = time.monotonic()
        try:
            response = self.http.request(method, self.base_url + path, timeout=CLIENT_TIMEOUT_S, **kwargs)
        except requests.Timeout:
            answer = Answer(what, started, time.monotonic(), None)
        else:
            body = response.json()
            answer = Answer(what, started, time.monotonic(), response.status_code,
                            response.headers.get("Retry-After"), (body.get("error") or {}).get("code"),
                            body.get("id"))
        with self._lock:
            self.answers.append(answer)
        return answer

    def submit(self, key: str, body: dict) -> Answer:
        answer = self._call("submit", "POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key})
        if answer.status in (200, 202) and answer.job_id:
            with self._lock:
                self.accepted[key] = answer.job_id
        return answer

    def read(self, job_id: str) -> Answer:
        return self._call("read", "GET", f"/v1/jobs/{job_id}")

    def job(self, job_id: str) -> dict:
        return self.http.get(f"{self.base_url}/v1/jobs/{job_id}", timeout=CLIENT_TIMEOUT_S).json()


def _body(n: int) -> dict:
    """Every other job on each worker kind: the local provider (compute), the remote one (I/O)."""
    if n % 2:
        return {"prompt": f"slow:{LATENCY_S} remote {n}", "provider": "http"}
    return {"prompt": f"local {n}", "params": {"size": "32x32", "simulate": {"latency_s": LATENCY_S}}}


class Load:
    """Submissions one after another (each retried until accepted), and reads of one job, until stopped."""

    def __init__(self, client: Client, job_id: str):
        self.client, self.job_id = client, job_id
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._submit, daemon=True),
                        threading.Thread(target=self._read, daemon=True)]
        self.n = 0

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(CLIENT_TIMEOUT_S + 5)

    def _submit(self) -> None:
        while not self.stop.is_set():
            self.n += 1
            key = f"load-{self.n}"
            while self.client.submit(key, _body(self.n)).status not in (200, 202) and not self.stop.is_set():
                time.sleep(0.5)  # a client would wait Retry-After; this one asks often, to sample the outage
            self.stop.wait(0.3)

    def _read(self) -> None:
        while not self.stop.is_set():
            self.client.read(self.job_id)
            self.stop.wait(0.3)


@pytest.fixture(scope="module")
def genline(bed):
    """Postgres alone on "db"; Redis, S3 and the remote provider on "data"; web and beat on "web";
    an I/O and a compute worker on each of "a" and "b". genline's default timeouts, lease and reaper."""
    db, data, web = bed.host("db"), bed.host("data"), bed.host("web")
    provider, _recorder = mh.start_recorder(data)
    env = mh.stack_env(mh.start_postgres(db), mh.start_redis(data), *mh.start_s3(data),
                       GENLINE_HTTP_PROVIDER_URL=f"{provider}/infer", GENLINE_HTTP_PROVIDER_TOKEN=mh.PROVIDER_TOKEN,
                       GENLINE_TENANT_CONCURRENCY=1000)
    mh.migrate(web, env)
    client = Client(mh.start_web(web, env))
    mh.start_beat(web, env)
    workers = [mh.start_worker(host, kind, env, ready=False) for host in (bed.host("a"), bed.host("b"))
               for kind in ("io", "compute")]
    for worker in workers:
        worker.wait_for_log("ready.", 120)
    return db, env, client


def _rows(env: dict) -> list[dict]:
    conn = psycopg2.connect(env["DATABASE_URL"], connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id, status, outputs, lease_owner, lost_count, attempt FROM jobs")
            columns = [c.name for c in cur.description]
            return [dict(zip(columns, row)) for row in cur.fetchall()]
    finally:
        conn.close()


def _stale_backends(env: dict) -> int:
    """Backends of the genline database left idle in a transaction for more than the link timeout."""
    conn = psycopg2.connect(env["DATABASE_URL"], connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                        "state LIKE 'idle in transaction%%' AND now() - state_change > %s * interval '1 second'",
                        (2 * LINK_TIMEOUT_S,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_database_link_down_for_20_s_under_load(genline):
    db, env, client = genline
    # Given jobs generating on both worker kinds, and a client submitting and reading all along
    first = [client.submit(f"first-{n}", _body(n)) for n in range(8)]
    assert all(a.status == 202 for a in first), first
    services.wait_for(lambda: sum(client.job(a.job_id)["status"] == "processing" for a in first) >= 4, 60,
                      "jobs generating")
    with Load(client, first[0].job_id) as load:
        time.sleep(2)
        # When the database's host is cut off for 20 s: its processes run on, nothing reaches them
        down = time.monotonic()
        db.link_down()
        try:
            time.sleep(OUTAGE_S)
        finally:
            db.link_up()
            up = time.monotonic()
        # (and once it is back, new submissions are accepted again)
        submitted = load.n
        services.wait_for(lambda: load.n > submitted + 2, 60, "submissions accepted after the link is back")

    # Then every request made while the database was gone got an answer, never hung
    assert [a for a in client.answers if a.status is None] == []
    during = [a for a in client.answers if a.started > down and a.ended < up]
    # and each was a 503 in the one error shape, with Retry-After: nothing was accepted without a database
    assert during and all(a.status == 503 and a.code == "service_unavailable" and a.retry_after for a in during), [
        a for a in during if a.status != 503 or not a.retry_after]
    assert {a.what for a in during} == {"submit", "read"}
    seconds = sorted(a.ended - a.started for a in during)
    print(f"\ndatabase link down {OUTAGE_S} s: {len(during)} requests answered 503, latency min {seconds[0]:.1f} s, "
          f"median {statistics.median(seconds):.1f} s, max {seconds[-1]:.1f} s")

    # And afterwards every accepted job ends completed, once, with its outputs stored
    ids = set(client.accepted.values())
    terminal = lambda: all(client.job(i)["status"] in ("completed", "failed", "canceled") for i in ids)  # noqa: E731
    services.wait_for(terminal, 120, "every accepted job terminal", interval=0.5)
    done = {i: client.job(i) for i in ids}
    assert {j["status"] for j in done.values()} == {"completed"}, {
        i: (j["status"], j.get("error")) for i, j in done.items() if j["status"] != "completed"}
    bucket = boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"], **mh.AWS_CLIENT)
    rows = {r["id"]: r for r in _rows(env)}
    for job_id, job in done.items():
        row = rows[job_id]
        assert job["outputs"] and row["lease_owner"] is None and len(row["outputs"]) == len(job["outputs"]), row
        for output in row["outputs"]:
            bucket.head_object(Bucket="genline", Key=f"outputs/{output['key']}")
    # none doubled: one job per submission, whatever the retries of a 503 it took
    assert len(rows) == len(ids) == len(client.accepted)
    lost = sum(r["lost_count"] > 0 for r in rows.values())
    print(f"{len(rows)} jobs completed; {lost} lost their worker's lease during the outage and ran again")
    # and no backend of a vanished connection still holds a transaction open on the database
    assert _stale_backends(env) == 0
