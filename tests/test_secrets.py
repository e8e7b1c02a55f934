"""Secrets stay out of logs, Redis and Flower: tasks carry only the job id, access
logs drop query strings (job tokens), and Flower answers nothing without basic auth."""
from __future__ import annotations

import base64
import json
import subprocess
import sys

import redis as redis_lib
import requests

from tests import services

PROVIDER_KEY = "sk-test-provider-secret-9f8e7d"
WEBHOOK_SECRET = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0xMjM0NTY3OA=="
PROMPT = "a very private prompt 42b1"


def redis_dump(url: str) -> str:
    """Every key and value in the Redis database, as text."""
    client = redis_lib.Redis.from_url(url)
    out = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        value = {"string": lambda: [client.get(key)], "list": lambda: client.lrange(key, 0, -1),
                 "hash": lambda: list(client.hgetall(key).items()), "set": lambda: list(client.smembers(key)),
                 "zset": lambda: client.zrange(key, 0, -1)}.get(kind, lambda: [])()
        out.append(f"{key!r} {value!r}")
    return "\n".join(out)


def test_task_messages_hold_only_the_job_id_and_no_secret_reaches_redis(make_stack):
    # Given a stack whose jobs wait in the queue (no worker), with provider and webhook secrets
    stack = make_stack(OPENAI_API_KEY=PROVIDER_KEY, GENLINE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    headers = stack.new_tenant("secret")
    api_key = headers["Authorization"].split()[1]

    # When a job with a prompt and a webhook is submitted
    job = stack.submit(headers, {"prompt": PROMPT, "params": {"size": "16x16"},
                                 "webhook": {"url": "http://127.0.0.1:9/hook"}})

    # Then its queued message's arguments are the job id alone
    client = redis_lib.Redis.from_url(stack.env["REDIS_URL"])
    messages = [json.loads(m) for m in client.lrange("io.normal", 0, -1)]
    assert messages, "the validate message should be waiting in the I/O kind's normal queue"
    body = json.loads(base64.b64decode(messages[0]["body"]))
    assert body[0] == [job["id"]] and body[1] == {}
    assert messages[0]["headers"]["argsrepr"] == repr([job["id"]])

    # And nothing in Redis holds the API key, the prompt or a secret
    dump = redis_dump(stack.env["REDIS_URL"])
    for secret in (api_key, PROMPT, PROVIDER_KEY, WEBHOOK_SECRET, "test-secret-key"):
        assert secret not in dump, secret


def test_access_log_has_no_query_string_tokens_and_no_keys(stack, tenant, log_dir):
    # Given the production web server
    web, url = services.start_gunicorn(stack.env, log_dir)
    try:
        job = stack.submit(tenant, {"prompt": "logged", "params": {"size": "16x16"}})
        token = job["urls"]["self"].split("token=")[1]

        # When a browser reads the job with its token, and a client with its key
        assert requests.get(f"{url}/v1/jobs/{job['id']}?token={token}", timeout=10).status_code == 200
        assert requests.get(f"{url}/v1/jobs/{job['id']}", headers={"Authorization": tenant["Authorization"]},
                            timeout=10).status_code == 200
    finally:
        web.stop()

    # Then the access log shows both requests, without the token or the key
    log = web.log()
    assert log.count(f"/v1/jobs/{job['id']}") >= 2
    assert token not in log and tenant["Authorization"].split()[1] not in log


def test_flower_refuses_requests_without_basic_auth(stack, log_dir):
    # Given Flower started as the Procfile starts it, with basic auth from the environment, and a worker
    port = services.free_port()
    env = {**stack.env, "FLOWER_BASIC_AUTH": "admin:flower-pass", "FLOWER_PORT": str(port)}
    flower = services.Process("flower", [sys.executable, "-m", "celery", "-A", "pipeline.worker", "flower",
                                         f"--port={port}", "--address=127.0.0.1",
                                         "--basic-auth=admin:flower-pass"], env, log_dir).start()
    try:
        base = f"http://127.0.0.1:{port}"
        services.wait_for(lambda: requests.get(base, timeout=1).status_code, 60, "flower")

        # Then every page and the API need the credentials
        for path in ("/", "/api/workers", "/api/tasks", "/tasks"):
            assert requests.get(base + path, timeout=10).status_code == 401, path
            assert requests.get(base + path, auth=("admin", "wrong"), timeout=10).status_code == 401, path
        assert requests.get(base + "/api/workers", auth=("admin", "flower-pass"), timeout=10).status_code == 200

        # And /metrics, which Flower serves without authentication by design (for Prometheus; genline
        # does not patch Flower), carries task and worker names and counts, never a job's id or prompt
        worker = stack.start_worker(concurrency=1, name="flowermetrics")
        tenant = stack.new_tenant("flowermetrics")
        job = stack.submit(tenant, {"prompt": "a secret lighthouse", "params": {"size": "16x16"}})
        assert stack.wait(tenant, job["id"], timeout=90)["status"] == "completed"
        services.wait_for(lambda: 'task="genline.generate"' in requests.get(base + "/metrics", timeout=10).text,
                          60, "flower's metrics to count the job's generate")
        metrics = requests.get(base + "/metrics", timeout=10).text
        assert job["id"] not in metrics and "lighthouse" not in metrics and tenant["Authorization"] not in metrics
        worker.stop()
    finally:
        flower.stop()


def test_the_procfile_will_not_start_flower_without_basic_auth(stack):
    line = next(x for x in (services.ROOT / "Procfile").read_text().splitlines() if x.startswith("flower:"))
    command = line.split(":", 1)[1].strip()
    env = {k: v for k, v in stack.env.items() if k != "FLOWER_BASIC_AUTH"}
    result = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "FLOWER_BASIC_AUTH" in result.stderr
