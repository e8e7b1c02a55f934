"""What one step message costs to publish: genline's broker transport against a client reused per channel.

    .venv/bin/python -m tests.bench.broker_publish [--sends 1000] [--rounds 7]

Starts its own redis-server and times Celery's ``send_task`` (with the
``task-sent`` event, as genline sends every step) through
``pipeline.adapters.broker:Transport``, alternating rounds with a variant that
keeps one ``redis.Redis`` per channel, the way genline's transport did before it
was limited to public kombu APIs (that variant overrides kombu's private
``Channel._create_client``; it exists here only to measure what was given up).
Prints the median and best ms per send of each.
"""
from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import time

import redis as redis_lib
from celery import Celery

from pipeline.adapters import broker
from pipeline.tooling.localproc import wait_for


class _ReusingChannel(broker.Channel):
    _sync_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        if self._sync_client is None or self._sync_client.connection_pool is not self.pool:
            self._sync_client = super()._create_client()
        return self._sync_client


class ReusingTransport(broker.Transport):
    Channel = _ReusingChannel


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _app(url: str, transport: str) -> Celery:
    app = Celery("broker-publish", broker=url, set_as_current=False)
    app.conf.update(broker_transport=transport, task_send_sent_event=True,
                    broker_transport_options={"queue_order_strategy": "priority"})
    return app


def _round(app: Celery, sends: int) -> float:
    started = time.perf_counter()
    for _ in range(sends):
        app.send_task("genline.generate", args=["job_x"], queue="io.normal")
    return (time.perf_counter() - started) / sends * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sends", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    a = parser.parse_args()
    port = _free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        wait_for(redis_lib.Redis.from_url(url).ping, 10, "redis-server")
        apps = {"genline (public APIs)": _app(url, "pipeline.adapters.broker:Transport"),
                "client reused (private override)": _app(url, f"{__name__}:ReusingTransport")}
        times: dict[str, list[float]] = {name: [] for name in apps}
        for app in apps.values():
            _round(app, 200)  # connect and warm up
        for _ in range(a.rounds):
            for name, app in apps.items():
                times[name].append(_round(app, a.sends))
        for name, ms in times.items():
            print(f"{name:34} ms/send median {statistics.median(ms):.3f}  best {min(ms):.3f}")
    finally:
        redis.terminate()
        redis.wait()


if __name__ == "__main__":
    main()
