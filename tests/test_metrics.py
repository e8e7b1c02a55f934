"""/metrics: Prometheus text, not public unless configured; counters and histograms
recorded where things happen, summed over every process (prometheus_client's
multiprocess mode), checked by promtool."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from pipeline.adapters import routing
from pipeline.config import Config
from tests import services
from tests.services import wait_for
from web import create_app

TOKEN = "scrape-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(text: str, name: str, **labels) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def promtool_clean(text: str) -> None:
    checked = services.promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), \
        checked.stdout + checked.stderr


def test_metrics_need_the_operator_token_and_report_jobs_queues_and_counters(stack, tenant):
    # Given a completed job
    job = stack.submit(tenant, {"prompt": "measured", "params": {"size": "16x16"}})
    assert stack.wait(tenant, job["id"])["status"] == "completed"

    # When /metrics is scraped without a key, it is refused
    refused = stack.client.get("/metrics")
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "unauthorized"

    # And a tenant's API key is refused: metrics hold every tenant's volume
    tenant_view = stack.client.get("/metrics", headers=tenant)
    assert tenant_view.status_code == 403 and "GENLINE_METRICS_TOKEN" in tenant_view.get_json()["error"]["message"]
    assert "genline_jobs" not in tenant_view.get_data(as_text=True)

    # Then with the operator's token it is Prometheus text with every family, which promtool accepts
    client = create_app(Config.from_env({**stack.env, "GENLINE_METRICS_TOKEN": TOKEN})).test_client()
    answer = client.get("/metrics", headers=AUTH)
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    text = answer.get_data(as_text=True)
    found = families(text)
    assert {"genline_jobs", "genline_queue_depth", "genline_jobs_submitted", "genline_jobs_finished",
            "genline_step_duration_seconds", "genline_queue_wait_seconds", "genline_provider_call_duration_seconds",
            "genline_job_duration_seconds", "genline_reaper_recoveries", "genline_webhook_deliveries",
            "genline_step_retries", "genline_provider_failovers", "genline_tasks_started"} <= set(found)
    completed = [s for s in found["genline_jobs"].samples if s.labels == {"status": "completed"}]
    assert completed and completed[0].value >= 1
    assert {s.labels["queue"] for s in found["genline_queue_depth"].samples} == set(routing.ALL_QUEUES)
    # This process accepted the job (the test client is the web process here)
    assert value(text, "genline_jobs_submitted_total", operation="generate", priority="normal") >= 1
    assert {s.labels["kind"] for s in found["genline_reaper_recoveries"].samples} >= {
        "lease_expired", "message_lost", "deadline"}
    assert "tenant" not in str([s.labels for s in found["genline_jobs_submitted"].samples])
    promtool_clean(text)


def test_a_metrics_token_or_public_flag_opens_metrics(stack):
    token_app = create_app(Config.from_env({**stack.env, "GENLINE_METRICS_TOKEN": TOKEN}))
    client = token_app.test_client()
    assert client.get("/metrics", headers=AUTH).status_code == 200
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics").status_code == 401

    public = create_app(Config.from_env({**stack.env, "GENLINE_METRICS_PUBLIC": "1"})).test_client()
    assert public.get("/metrics").status_code == 200


def test_queue_depth_counts_messages_of_every_priority_through_kombu(stack):
    # Given messages of three priorities in a queue no worker consumes
    from pipeline.adapters import broker
    celery = stack.app.extensions["celery"]
    queue = "metrics-depth-probe"
    with stack.app.app_context():
        for priority in (0, 0, 5, 9):
            celery.send_task("genline.unused", args=["x"], queue=queue, priority=priority)
        try:
            # When their depth is read through kombu's public queue_declare
            depths = broker.queue_depths(celery, [queue, "metrics-empty-probe"])
        finally:
            with celery.connection_for_write() as conn:
                conn.default_channel.queue_purge(queue)
    # Then every priority's messages are counted, and an empty queue is 0
    assert depths == {queue: 4, "metrics-empty-probe": 0}


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(p) for p in fh.read().split()]


def _http_wait(url: str, headers: dict, job_id: str) -> dict:
    def ended():
        job = requests.get(f"{url}/v1/jobs/{job_id}", headers=headers, timeout=5).json()
        return job if job["status"] in ("completed", "failed", "canceled") else None
    return wait_for(ended, 60, f"job {job_id} to end")


@pytest.mark.slow
def test_counters_and_histograms_come_from_every_web_and_worker_process_and_never_go_down(make_stack, tmp_path):
    # Given gunicorn with two gevent workers and a prefork worker, sharing a multiprocess directory
    stack = make_stack(PROMETHEUS_MULTIPROC_DIR=tmp_path / "prom", GENLINE_METRICS_TOKEN=TOKEN)
    worker = stack.start_worker(concurrency=2, name="counted")
    web, url = services.start_gunicorn(stack.env, stack.log_dir, workers=2)
    stack.processes.append(web)
    headers = stack.new_tenant()
    dead_end = f"http://127.0.0.1:{services.free_port()}/hook"  # nothing listens: a network error

    # When three jobs are submitted over HTTP: one plain (with a webhook), one retried once, one refused
    bodies = [
        {"prompt": "plain", "params": {"size": "16x16"}, "webhook": {"url": dead_end}},
        {"prompt": "retried", "params": {"size": "16x16", "simulate": {"fail_attempts": 1}},
         "budget": {"max_attempts": 2}},
        {"prompt": "refused", "params": {"size": "16x16", "simulate": {"fail_attempts": 1,
                                                                         "fail_code": "unsafe_content"}}},
    ]
    ids = []
    for body in bodies:
        answer = requests.post(f"{url}/v1/jobs", json=body, headers=headers, timeout=10)
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])
    ended = [_http_wait(url, headers, job_id)["status"] for job_id in ids]
    assert ended == ["completed", "completed", "failed"]

    def scrape() -> str:
        answer = requests.get(f"{url}/metrics", headers=AUTH, timeout=10)
        assert answer.status_code == 200
        return answer.text

    # Then whichever gunicorn worker answers, the counters are every process's, counted as things happened
    text = wait_for(lambda: (t := scrape()) and value(t, "genline_webhook_deliveries_total",
                                                       outcome="network_error") >= 1 and t, 30, "the webhook attempt")
    assert value(text, "genline_jobs_submitted_total", operation="generate", priority="normal") == 3
    assert value(text, "genline_jobs_finished_total", status="completed", error_code="none") == 2
    assert value(text, "genline_jobs_finished_total", status="failed", error_code="unsafe_content") == 1
    assert value(text, "genline_step_attempts_total", step="generate") == 4
    assert value(text, "genline_step_attempts_total", step="upload") == 2
    assert value(text, "genline_step_retries_total", step="generate", error_code="provider_error") == 1
    assert value(text, "genline_step_duration_seconds_count", step="generate", outcome="ok") == 2
    assert value(text, "genline_step_duration_seconds_count", step="generate", outcome="error") == 2
    assert value(text, "genline_provider_call_duration_seconds_count", provider="local", operation="generate") == 4
    assert value(text, "genline_provider_call_duration_seconds_count", provider="local",
                 outcome="unsafe_content") == 1
    assert value(text, "genline_queue_wait_seconds_count", priority="normal", provider="local") == 3
    assert value(text, "genline_job_duration_seconds_count", status="completed") == 2
    assert value(text, "genline_job_duration_seconds_count", status="failed") == 1
    # Histograms are cumulative: the +Inf bucket holds every observation
    assert value(text, "genline_job_duration_seconds_bucket", status="completed", le="+Inf") == 2
    assert value(text, "genline_tasks_started_total", queue="io.normal") >= 3
    assert value(text, "genline_tasks_started_total", queue="compute.normal") >= 4
    assert value(text, "genline_jobs", status="completed") == 2
    assert not any(job_id in text for job_id in ids) and headers["X-Tenant"] not in text  # no ids in labels
    promtool_clean(text)
    for _ in range(4):  # both gunicorn workers answer alike
        assert value(scrape(), "genline_jobs_submitted_total") == 3

    # When a gunicorn worker is killed (the master forks another) and the worker is restarted
    before = scrape()
    victim = _children(web.pid)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(_children(web.pid)) == 2 and victim not in _children(web.pid), 30, "a new gunicorn worker")
    worker.stop()
    stack.processes.remove(worker)
    stack.start_worker(concurrency=2, name="counted-again")

    # Then no counter went down: the exited processes' values are still summed
    after = scrape()
    for name, labels in [("genline_jobs_submitted_total", {}), ("genline_jobs_finished_total", {}),
                         ("genline_step_attempts_total", {"step": "generate"}),
                         ("genline_step_duration_seconds_count", {}), ("genline_tasks_started_total", {})]:
        assert value(after, name, **labels) >= value(before, name, **labels) > 0, name


@pytest.mark.slow
@pytest.mark.parametrize("worker_layout", ["all", "kinds"])
def test_a_worker_serves_its_hosts_metrics_on_its_own_port_and_counts_reaper_recoveries(make_stack, tmp_path):
    # Given a worker host without a web process: workers with GENLINE_WORKER_METRICS_PORT and
    # a multiprocess directory of their own, and beat running the reaper (on the kinds layout
    # the gevent I/O worker serves the port and the prefork compute worker finds it taken)
    port = services.free_port()
    stack = make_stack(PROMETHEUS_MULTIPROC_DIR=tmp_path / "worker-host", GENLINE_WORKER_METRICS_PORT=port)
    first = stack.start_worker(concurrency=1, name="host-a")
    stack.start_beat()
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    wait_for(lambda: requests.get(metrics_url, timeout=2).ok, 30, "the worker's metrics port")
    headers = stack.new_tenant()

    # When a job's worker is SIGKILLed while it generates and another worker takes over
    job = stack.submit(headers, {"prompt": "survive", "params": {"size": "32x32", "simulate": {"latency_s": 4}}})
    wait_for(lambda: stack.job(headers, job["id"])["status"] == "processing", 30, "the job to start generating")
    first.kill_group()
    stack.start_worker(concurrency=1, name="host-b")
    assert stack.wait(headers, job["id"], timeout=60)["status"] == "completed"

    # Then the surviving worker's port shows the reaper's recovery, its attempts and the job's end
    text = wait_for(lambda: (t := requests.get(metrics_url, timeout=5).text)
                    and value(t, "genline_jobs_finished_total", status="completed") == 1 and t, 30, "the metrics")
    assert value(text, "genline_reaper_recoveries_total", kind="lease_expired") == 1
    assert value(text, "genline_step_attempts_total", step="generate") == 2  # the lost one and the one that ended
    assert "genline_jobs{" not in text  # the gauges read from the database are the web's
    promtool_clean(text)


def test_tenant_labels_only_when_the_operator_turns_them_on(tmp_path):
    # A fresh process each (the families are made once per process), as a web process would be
    script = ("import sys; from prometheus_client import generate_latest; from pipeline.adapters import metrics; "
              "metrics.configure(tenant_labels=sys.argv[1] == '1'); "
              "metrics.job_submitted('generate', 'normal', 'acme'); "
              "metrics.job_finished('failed', 'timeout', 'generate', 2.0, 'acme'); "
              "print(generate_latest(metrics.registry()).decode())")
    env = {**os.environ, "PYTHONPATH": str(services.ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    run = [sys.executable, "-c", script]
    on = subprocess.run([*run, "1"], env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    off = subprocess.run([*run, "0"], env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    assert value(on, "genline_jobs_submitted_total", tenant="acme") == 1
    assert value(on, "genline_jobs_finished_total", tenant="acme", status="failed", error_code="timeout") == 1
    assert 'tenant="acme"' not in on.split("genline_job_duration_seconds")[1]  # histograms never get it
    assert "acme" not in off and value(off, "genline_jobs_submitted_total") == 1
    promtool_clean(on)
