"""The bed itself: hosts that reach each other only over their links, and a whole
genline across them (data, web, worker hosts) running a job end to end."""
from __future__ import annotations

import subprocess
import sys

import boto3
import pytest

from tests.multihost import bed as mh
from tests.multihost.api import Api


@pytest.fixture(scope="module")
def stack(bed):
    data, web, worker = bed.host("data"), bed.host("web"), bed.host("worker")
    provider, _recorder = mh.start_recorder(data)
    env = mh.stack_env(mh.start_postgres(data), mh.start_redis(data), *mh.start_s3(data),
                       GENLINE_HTTP_PROVIDER_URL=f"{provider}/infer",
                       GENLINE_HTTP_PROVIDER_TOKEN=mh.PROVIDER_TOKEN)
    mh.migrate(web, env)
    api = Api(mh.start_web(web, env))
    mh.start_worker(worker, "io", env)
    mh.start_worker(worker, "compute", env)
    return {"api": api, "data": data, "worker": worker, "env": env}


def _reach(host, address: str, port: int) -> bool:
    code = f"import socket; socket.create_connection(({address!r}, {port}), timeout=2)"
    return subprocess.run(["ip", "netns", "exec", host.ns, sys.executable, "-c", code],
                          capture_output=True).returncode == 0


def test_a_job_runs_across_hosts_on_both_worker_kinds(stack):
    # Given data, web and worker hosts; when a compute job and a remote (I/O) job are submitted
    api = stack["api"]
    local = api.submit({"prompt": "across hosts", "params": {"size": "32x32"}})
    remote = api.submit({"prompt": "across hosts remote", "provider": "http"})
    # Then both complete, and their outputs sit in the data host's bucket
    for job in (api.wait(local["id"]), api.wait(remote["id"])):
        assert job["status"] == "completed", job["error"]
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=stack["env"]["S3_ENDPOINT_URL"],
                                           **mh.AWS_CLIENT).list_objects_v2(Bucket="genline")["Contents"]]
    assert any(local["id"] in k for k in keys) and any(remote["id"] in k for k in keys)


def test_hosts_reach_each_other_only_over_their_links(stack):
    data, worker = stack["data"], stack["worker"]
    # A worker host reaches the data host's Postgres over its link...
    assert _reach(worker, data.address, 5432)
    # ...but nothing on its own loopback: the machine's services are not on this host
    assert not _reach(worker, "127.0.0.1", 5432)
    # And with its link down it reaches nothing; with it back, the data host again
    worker.link_down()
    try:
        assert not _reach(worker, data.address, 5432)
    finally:
        worker.link_up()
    assert _reach(worker, data.address, 5432)
