"""Managed Redis over TLS: with ``REDIS_URL=rediss://…?ssl_cert_reqs=none`` (a
self-signed certificate, as Heroku Redis hands out) the broker, live events,
rate limits, Flower and beat's schedule lock all work, against a real redis-server
that speaks only TLS."""
from __future__ import annotations

import ssl
import time

import pytest
import requests

from pipeline.adapters.redis_tls import ssl_options
from pipeline.config import Config, ConfigError
from tests import services
from tests.conftest import base_env
from tests.procfile import start_line
from tests.tlsredis import TLSRedisServer


def test_the_url_query_becomes_broker_use_ssl():
    assert ssl_options("redis://h:6379/0") is None
    assert ssl_options("rediss://h:6380/0?ssl_cert_reqs=none") == {"ssl_cert_reqs": ssl.CERT_NONE}
    assert ssl_options("rediss://h/0?ssl_cert_reqs=CERT_OPTIONAL&ssl_ca_certs=/ca.pem") == {
        "ssl_cert_reqs": ssl.CERT_OPTIONAL, "ssl_ca_certs": "/ca.pem"}
    assert ssl_options("rediss://h/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert Config.from_env({"REDIS_URL": "rediss://h:6380/0", "GENLINE_REDIS_SSL_CERT_REQS": "none"}).redis_url == \
        "rediss://h:6380/0?ssl_cert_reqs=none"
    assert Config.from_env({"REDIS_URL": "redis://h/0", "GENLINE_REDIS_SSL_CERT_REQS": "none"}).redis_url == "redis://h/0"
    with pytest.raises(ConfigError, match="REDIS_URL: ssl_cert_reqs"):
        Config.from_env({"REDIS_URL": "rediss://h/0?ssl_cert_reqs=maybe"})


@pytest.fixture
def tls_redis():
    server = TLSRedisServer().start()
    yield server
    server.stop()


@pytest.mark.slow
def test_a_stack_on_tls_redis_runs_jobs_streams_events_limits_and_schedules(tls_redis, tmp_path, log_dir):
    # Given a stack whose only Redis is TLS with a self-signed certificate
    db_url = services.create_database()
    flower_port = services.free_port()
    env = base_env(db_url, tls_redis.url, (tmp_path / "out").as_uri(), GENLINE_RATE_LIMIT="4/minute",
                   FLOWER_PORT=flower_port, FLOWER_BASIC_AUTH="ops:flower-pw", GENLINE_REAPER_INTERVAL_S=1,
                   GENLINE_SSE_HEARTBEAT_S=1)
    from tests.conftest import Stack
    stack = Stack(env, log_dir)
    procs = []
    try:
        stack.migrate()
        web, base = services.start_gunicorn(env, log_dir)
        procs.append(web)
        procs += [start_line(name, env, log_dir) for name in ("worker", "compute", "beat", "flower")]
        headers = stack.new_tenant()
        headers.pop("X-Tenant")
        # When jobs are submitted over HTTP and one job's events are streamed
        ids = [requests.post(f"{base}/v1/jobs", json={"prompt": f"tls {i}", "params": {"simulate": {"latency_s": 0.5}}},
                             headers=headers, timeout=10).json()["id"] for i in range(4)]
        stream = requests.get(f"{base}/v1/jobs/{ids[0]}/events", headers=headers, stream=True, timeout=30)
        seen, end = [], time.monotonic() + 60
        for line in stream.iter_lines(decode_unicode=True):
            assert time.monotonic() < end, f"no terminal event within 60 s: {seen}"
            if line.startswith("event:"):
                seen.append(line.split(":", 1)[1].strip())
                if seen[-1] in ("completed", "failed"):
                    break
        stream.close()
        # Then the broker carried them all to the worker
        for job_id in ids:
            job = services.wait_for(lambda: (j := requests.get(f"{base}/v1/jobs/{job_id}", headers=headers, timeout=5).json())
                                    ["status"] in ("completed", "failed") and j, 60, f"job {job_id}")
            assert job["status"] == "completed", job
        assert seen[-1] == "completed", seen
        # and live events came over pub/sub (the web's listener subscribed on the TLS Redis)
        services.wait_for(lambda: "event listener subscribed" in web.log(), 10, "the web's event listener")
        # and the rate limit counts in the TLS Redis: the fifth submission in a minute is refused
        fifth = requests.post(f"{base}/v1/jobs", json={"prompt": "one too many"}, headers=headers, timeout=10)
        assert fifth.status_code == 429, fifth.text
        client = tls_redis.client()
        assert client.keys("LIMITS*"), sorted(client.keys("*"))
        # and beat holds its lock and schedule in Redis (redbeat), and its reaper passes run
        services.wait_for(lambda: client.keys("genline:beat:*lock"), 20, "beat's lock in the TLS redis")
        services.wait_for(lambda: "genline.reap" in procs[1].log(), 20, "a reaper pass on the worker")
        # and Flower reads the broker over TLS, behind its basic auth
        flower = f"http://127.0.0.1:{flower_port}"
        services.wait_for(lambda: requests.get(f"{flower}/healthcheck", timeout=2).ok, 30, "flower")
        assert requests.get(f"{flower}/api/workers", timeout=10).status_code == 401
        # (Flower's control commands go over the broker: a worker answers through the TLS Redis)
        workers = services.wait_for(lambda: requests.get(f"{flower}/api/workers?refresh=1", auth=("ops", "flower-pw"),
                                                         timeout=10).json(), 30, "workers seen by flower")
        assert any(name.startswith(("io@", "compute@")) for name in workers), workers
        for proc in procs:
            assert "Traceback" not in proc.log(), proc.log_tail()
    finally:
        for proc in reversed(procs):
            proc.stop()
        with stack.app.app_context():
            from pipeline.store.models import db
            db.engine.dispose()
        services.drop_database(db_url)
