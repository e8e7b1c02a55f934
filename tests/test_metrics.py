"""/metrics: Prometheus text, not public unless configured."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from pipeline.adapters import routing
from pipeline.config import Config
from web import create_app


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_need_the_operator_token_and_report_jobs_latency_queues_and_webhooks(stack, tenant):
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

    # Then with the operator's token it is Prometheus text with every family
    client = create_app(Config.from_env({**stack.env, "GENLINE_METRICS_TOKEN": "scrape-token"})).test_client()
    answer = client.get("/metrics", headers={"Authorization": "Bearer scrape-token"})
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    found = families(answer.get_data(as_text=True))
    assert {"genline_jobs", "genline_step_duration_seconds", "genline_queue_depth", "genline_webhook_deliveries"} <= set(found)
    completed = [s for s in found["genline_jobs"].samples if s.labels == {"status": "completed"}]
    assert completed and completed[0].value >= 1
    counts = {s.labels["step"]: s.value for s in found["genline_step_duration_seconds"].samples
              if s.name.endswith("_count")}
    assert counts["generate"] >= 1 and counts["total"] >= 1
    assert {s.labels["queue"] for s in found["genline_queue_depth"].samples} == set(routing.ALL_QUEUES)


def test_a_metrics_token_or_public_flag_opens_metrics(stack):
    token_app = create_app(Config.from_env({**stack.env, "GENLINE_METRICS_TOKEN": "scrape-token"}))
    client = token_app.test_client()
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-token"}).status_code == 200
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
