"""The raw baselines genline is measured against, in the same run.

- A chain of four no-op Celery tasks passing a small dict, on the same
  redis-server (its own database number) and worker settings as genline's:
  prefork, the same ``-c``, acks late, prefetch 1, JSON, task events on (``-E``
  and ``task-sent``, as genline runs them for Flower). The last task pushes
  to a Redis list the client blocks on, the raw analogue of "the client sees
  completed".
- A bare Flask JSON endpoint under the same gunicorn settings, for submit.

The worker runs ``celery -A pipeline.tooling.bench.baseline worker -Q bench``.
"""
from __future__ import annotations

import json
import os
import time
import uuid

import redis
from celery import Celery, chain
from flask import Flask, jsonify, request

QUEUE = "bench"

app = Celery("genline-bench-baseline", broker=os.environ.get("GENLINE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/1"))
app.conf.update(
    task_ignore_result=True, result_backend=None, task_acks_late=True, task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1, task_default_queue=QUEUE, task_serializer="json", accept_content=["json"],
    broker_connection_retry_on_startup=True, worker_send_task_events=True, task_send_sent_event=True,
)
_redis: redis.Redis | None = None


def _client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(app.conf.broker_url)
    return _redis


@app.task(name="bench.step")
def step(payload: dict) -> dict:
    """A no-op step: count itself into the dict it passes on."""
    return dict(payload, steps=payload.get("steps", 0) + 1)


@app.task(name="bench.done")
def done(payload: dict, reply_key: str, count_key: str | None = None) -> None:
    """The fourth task: tell the waiting client (or bump the throughput counter)."""
    now = time.time()
    if count_key:
        pipe = _client().pipeline()
        pipe.incr(count_key).set(f"{count_key}:last", now).execute()
    else:
        _client().rpush(reply_key, json.dumps({"at": now, "steps": payload.get("steps", 0) + 1}))


def configure(broker_url: str) -> None:
    """Point the client side (the bench process) at the baseline's Redis."""
    global _redis
    app.conf.broker_url = broker_url
    _redis = None


def _send(payload: dict, reply_key: str = "", count_key: str | None = None) -> None:
    chain(step.s(payload), step.s(), step.s(), done.s(reply_key, count_key)).apply_async(queue=QUEUE)


def chain_latencies(n: int, advance=lambda: None) -> list[float]:
    """End to end seconds of ``n`` chains, one at a time: send, then block until the last task ran."""
    out = []
    for i in range(n):
        key = f"bench:reply:{uuid.uuid4().hex}"
        start = time.perf_counter()
        _send({"job": i, "prompt": "a lighthouse", "size": "16x16"}, key)
        if _client().blpop([key], timeout=60) is None:
            raise TimeoutError(f"baseline chain {i} did not finish in 60 s")
        out.append(time.perf_counter() - start)
        advance()
    return out


def chain_throughput(n: int, advance=lambda done: None, timeout: float = 300) -> tuple[float, int, float | None]:
    """(chains/s from the first send, chains finished, chains/s after the last send).

    Send ``n`` chains at once and wait for the last to finish; the third figure
    counts only chains finished after the sending ended (the drain of a full
    queue, as ``load.drain_rate`` measures genline's), None if too few were left.
    """
    count_key = f"bench:count:{uuid.uuid4().hex}"
    start = time.time()
    for i in range(n):
        _send({"job": i, "prompt": "a lighthouse", "size": "16x16"}, count_key=count_key)
    sent_at, done_when_sent = time.time(), int(_client().get(count_key) or 0)
    end = time.monotonic() + timeout
    finished = 0
    while time.monotonic() < end:
        finished = int(_client().get(count_key) or 0)
        advance(finished)
        if finished >= n:
            break
        time.sleep(0.02)
    last = float(_client().get(f"{count_key}:last") or time.time())
    rate = finished / (last - start) if last > start else 0.0
    drained = finished - done_when_sent
    drain = drained / (last - sent_at) if drained >= 0.2 * n and last > sent_at else None
    return rate, finished, drain


def create_flask_app():
    """The bare Flask JSON endpoint: parse the body, answer 202 with a small JSON object."""
    flask_app = Flask("genline-bench-baseline")

    @flask_app.post("/v1/jobs")
    def create():
        body = request.get_json(force=True, silent=True) or {}
        return jsonify({"id": uuid.uuid4().hex, "status": "queued", "prompt": body.get("prompt")}), 202

    @flask_app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    return flask_app
