"""Redis behind Sentinel: every Redis user follows a failover, and no job is lost or doubled.

A primary, a replica and three sentinels are started here (tests/sentinels.py);
web (gunicorn), workers and beat all get the one ``sentinel://`` REDIS_URL.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from pipeline.adapters import dispatch
from tests import services
from tests.conftest import Stack, _postgres_or_skip, base_env
from tests.sentinels import SentinelRedis
from tests.sse import Reader
from tests.test_webhooks import Receiver

JOBS = 40
STREAMS = 8
LATENCY_S = 1.5


@contextmanager
def sentinel_stack(tmp_path: Path, log_dir: Path, **extra):
    """A stack (own Postgres database) on a Sentinel-watched Redis; everything stopped afterwards."""
    _postgres_or_skip()
    try:
        bed = SentinelRedis().start()
    except services.ServiceMissing as exc:
        services.missing(str(exc))
    db_url = services.create_database()
    stack = Stack(base_env(db_url, bed.url, (tmp_path / "outputs").as_uri(), **extra), log_dir)
    try:
        stack.migrate()
        yield stack, bed
    finally:
        stack.stop()
        bed.stop()
        with stack.app.app_context():
            from pipeline.store.models import db
            db.engine.dispose()
        services.drop_database(db_url)


class Stream:
    """One SSE client of a job: resumes with Last-Event-ID whenever its connection ends, until the terminal event."""

    def __init__(self, url: str):
        self.url, self.connects = url, 0
        self.ids: list[int] = []
        self.events: list[str] = []
        self.response: requests.Response | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None
        self.cut = False

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline and not (self.events and self.events[-1] in ("completed", "failed")):
                headers = {"Accept": "text/event-stream"}
                if self.ids:
                    headers["Last-Event-ID"] = str(self.ids[-1])
                try:
                    self.response = requests.get(self.url, headers=headers, stream=True, timeout=(2, 10))
                    self.connects += 1
                    if self.response.status_code != 200:
                        time.sleep(0.2)  # 503 while Redis fails over: come back, as EventSource does
                        continue
                    for frame in Reader(self.response.iter_content(chunk_size=None)).events():
                        self.ids.append(int(frame["id"]))
                        self.events.append(frame["event"])
                except (requests.RequestException, AttributeError, ValueError):
                    time.sleep(0.1)  # the connection was dropped: resume after the last id seen
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def drop(self) -> None:
        """Cut the connection, as a network blip does; the client resumes on its own."""
        self.cut = self.thread.is_alive()  # else its job had ended already: nothing to cut
        if self.response is not None:
            self.response.close()


def submit_all(base: str, headers: dict, hook: str, count: int, answers: Counter, jobs: list) -> None:
    """Submit ``count`` jobs one after another, each retried under its Idempotency-Key until accepted."""
    for index in range(count):
        body: dict[str, Any] = {"prompt": f"failover {index}", "params": {"size": "16x16", "simulate": {"latency_s": LATENCY_S}},
                "budget": {"deadline_s": 240, "timeout_s": 60, "max_attempts": 3}, "webhook": {"url": hook}}
        while True:
            try:
                response = requests.post(f"{base}/v1/jobs", json=body, timeout=10,
                                         headers={**headers, "Idempotency-Key": f"failover-{index}"})
            except requests.RequestException:
                answers["unreachable"] += 1
                time.sleep(0.2)
                continue
            answers[response.status_code] += 1
            if response.status_code in (200, 202):
                jobs.append(response.json())
                break
            assert response.status_code == 503 and response.headers.get("Retry-After"), response.text
            time.sleep(min(float(response.headers["Retry-After"]), 1.0))
        time.sleep(0.1)


@pytest.mark.slow
def test_killing_the_primary_under_load_loses_no_job_doubles_none_and_streams_miss_nothing(tmp_path, log_dir):
    receiver = Receiver().start()
    with sentinel_stack(tmp_path, log_dir, GENLINE_SSE_HEARTBEAT_S="1", GENLINE_WEBHOOK_RETRY_BASE_S="0.3") as (
            stack, bed):
        # Given web, two workers and beat, all on the sentinel URL, and a tenant
        for name in ("a", "b"):
            stack.start_worker(concurrency=3, name=f"sentinel-{name}")
        stack.start_beat()
        web, base = services.start_gunicorn(stack.env, log_dir, workers=1)
        stack.processes.append(web)
        tenant = stack.new_tenant()
        headers = {"Authorization": tenant["Authorization"]}

        # When jobs are submitted steadily and some are streamed ...
        answers: Counter = Counter()
        jobs: list[dict] = []
        submitter = threading.Thread(target=submit_all, args=(base, headers, receiver.url, JOBS, answers, jobs))
        submitter.start()
        services.wait_for(lambda: len(jobs) >= STREAMS, 60, "the first jobs submitted")
        streams = [Stream(job["urls"]["events"]) for job in jobs[:STREAMS]]
        for stream in streams:
            stream.thread.start()
        # ... and the primary is SIGKILLed while jobs run and more arrive
        services.wait_for(lambda: len(receiver.requests) >= 2, 60, "the first jobs completed")
        bed.kill_primary()
        for stream in streams:
            stream.drop()  # every client's connection breaks too, and it resumes with Last-Event-ID
        promoted_s = bed.wait_promoted()

        # Then the web answers again through the new primary, and the submissions all get in
        services.wait_for(lambda: requests.get(f"{base}/readyz", timeout=5).ok, 60, "the web ready again")
        submitter.join(120)
        assert not submitter.is_alive() and len(jobs) == JOBS, answers

        # Every job ends terminal, completed
        ids = [job["id"] for job in jobs]
        assert len(set(ids)) == JOBS
        try:
            finals = {job_id: stack.wait(tenant, job_id, timeout=120) for job_id in ids}
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- redis now ---\n{bed.keyspace()}\n{bed.log()}") from None
        assert Counter(job["status"] for job in finals.values()) == {"completed": JOBS}, bed.log()

        # None doubled: one completed event, one output object, one completed webhook per job
        for job_id in ids:
            kinds = Counter(event["type"] for event in stack.events(job_id))
            assert kinds["completed"] == 1, (job_id, kinds)
            outputs = list((tmp_path / "outputs" / "outputs" / job_id).iterdir())
            assert len(outputs) == 1 and len(finals[job_id]["outputs"]) == 1, (job_id, outputs)
        services.wait_for(lambda: len({json.loads(r["body"])["data"]["job"]["id"] for r in receiver.requests
                                       if json.loads(r["body"])["type"] == "job.completed"}) == JOBS,
                          90, "every completed webhook delivered (a lost one by the sweep)")
        # One message per job's completed event: a delivery whose worker was cut off between the
        # POST and its row is sent again under the same webhook-id, which receivers de-duplicate on
        messages: dict[str, set] = {}
        for request in receiver.requests:
            body = json.loads(request["body"])
            if body["type"] == "job.completed":
                messages.setdefault(body["data"]["job"]["id"], set()).add(request["headers"]["webhook-id"])
        for job_id in ids:
            seq = [e["id"] for e in stack.events(job_id) if e["type"] == "completed"][0]
            assert messages[job_id] == {f"msg_{job_id.removeprefix('job_')}_{seq}"}, (job_id, messages[job_id])
        redelivered = sum(1 for r in receiver.requests if json.loads(r["body"])["type"] == "job.completed") - JOBS

        # SSE clients reconnected and got every event of the log once, in order, ending with completed
        for stream in streams:
            stream.thread.join(60)
            assert stream.error is None and not stream.thread.is_alive()
        for job, stream in zip(jobs[:STREAMS], streams):
            log = [event["id"] for event in stack.events(job["id"])]
            assert stream.ids == log, (job["id"], stream.ids, log)
            assert stream.events[-1] == "completed" and stream.connects >= 1 + stream.cut
        assert sum(stream.cut for stream in streams) >= 2, "too few streams were open at the kill to show a resume"
        print(f"\nsentinel failover: promoted in {promoted_s:.1f} s after the kill; submit answers {dict(answers)}; "
              f"completed webhooks sent again under their webhook-id: {redelivered}")
    receiver.stop()


def test_rate_limits_and_locks_live_in_the_primary_the_sentinels_name(tmp_path, log_dir):
    with sentinel_stack(tmp_path, log_dir, GENLINE_RATE_LIMIT="2/minute") as (stack, bed):
        # Given a stack on the sentinel URL and a key limited to two submissions a minute
        tenant = stack.new_tenant()

        # When it submits three jobs
        answers = [stack.client.post("/v1/jobs", json={"prompt": "limited"}, headers=tenant).status_code
                   for _ in range(3)]

        # Then the third is refused, counted in the primary's keyspace
        assert answers == [202, 202, 429]
        primary = bed.primary()
        assert any(b"submissions" in key for key in primary.keys("*LIMITS*"))

        # And a periodic pass holds its lock in the primary, so a second one is skipped
        from pipeline.worker import periodic
        with stack.app.app_context(), periodic.alone("sentinel-test", timeout=30) as first:
            assert first is True and primary.exists("genline:periodic:sentinel-test")
            with periodic.alone("sentinel-test", timeout=30) as second:
                assert second is False

        # And beat takes its redbeat lock through the sentinels
        stack.start_beat()
        assert any(b"genline:beat:" in key for key in primary.keys("genline:beat:*"))


def test_in_flight_markers_written_to_another_primary_are_not_trusted(redis_server):
    # Given markers of in-flight messages, written while this Redis was the recorded primary
    client = redis.Redis(port=redis_server.port, db=3)
    client.flushdb()
    assert dispatch.forget_markers_of_another_primary(client) == 0  # records this server's run_id
    client.set(dispatch.MARKER.format("job_a"), "1")
    client.set(dispatch.MARKER.format("job_b") + ":token", "1")
    client.set("genline:other", "1")
    assert dispatch.forget_markers_of_another_primary(client) == 0  # same server: markers trusted

    # When the primary answering is another server (as after a failover: the recorded run_id differs)
    client.set(dispatch.PRIMARY_KEY, "run-id-of-the-old-primary")

    # Then every marker is forgotten (the reaper re-sends those jobs), and nothing else
    assert dispatch.forget_markers_of_another_primary(client) == 2
    assert client.keys("genline:inflight:*") == [] and client.exists("genline:other")
    assert client.get(dispatch.PRIMARY_KEY).decode() == client.info("server")["run_id"]
