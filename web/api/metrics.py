"""/metrics: Prometheus text of jobs by status, step latency histograms, queue
depth and webhook outcomes.

The numbers are read from the job rows and Redis at scrape time (a custom
collector), so every web process answers the same and nothing is lost when a
process restarts. The numbers are every tenant's together, so they are for the
operator: public only with GENLINE_METRICS_PUBLIC=1, otherwise the scraper sends
``Authorization: Bearer`` with GENLINE_METRICS_TOKEN. A tenant's API key is
refused (403): it would show one tenant every other tenant's volume.
"""
from __future__ import annotations

import hmac
from datetime import timedelta

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import func, select

from pipeline.adapters import events
from pipeline.store.models import Job, WebhookDelivery, db, utcnow
from pipeline.worker.celery_app import QUEUES
from web.api.errors import ApiError
from web.api.openapi import describe
from web.auth import bearer_key, config, tenant_for_key

bp = Blueprint("metrics", __name__)

BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
WINDOW = timedelta(hours=24)
"""Latency histograms cover jobs completed within this window."""
SAMPLE = 20_000
"""At most this many recent jobs feed the histograms (a scrape stays cheap)."""
TIMINGS = ("queued_s", "generate_s", "upload_s", "total_s")
PRIORITY_SEP = "\x06\x16"
"""How kombu's Redis transport names a queue's priority sub-lists."""


def _histogram(values: list[float]) -> tuple[list, float]:
    """Cumulative (bound, count) buckets and the sum, as Prometheus histograms have them."""
    counts = [(str(bound), sum(1 for v in values if v <= bound)) for bound in BUCKETS]
    return counts + [("+Inf", len(values))], sum(values)


class Collector:
    """Reads the metrics at scrape time."""

    def collect(self):
        try:
            yield from self._jobs()
            yield from self._latency()
            yield from self._webhooks()
        finally:
            db.session.rollback()
        yield from self._queues()

    def _jobs(self):
        family = GaugeMetricFamily("genline_jobs", "Jobs by status (as kept by retention)", labels=["status"])
        counts = dict(db.session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
        for status in ("queued", "processing", "completed", "failed", "canceled"):
            family.add_metric([status], counts.get(status, 0))
        yield family

    def _latency(self):
        family = HistogramMetricFamily("genline_step_duration_seconds",
                                       "Seconds per step of jobs completed in the last 24 h", labels=["step"])
        rows = db.session.execute(
            select(Job.timing).where(Job.status == "completed", Job.completed_at > utcnow() - WINDOW)
            .order_by(Job.completed_at.desc()).limit(SAMPLE)
        ).scalars().all()
        for name in TIMINGS:
            values = [float(t[name]) for t in rows if t and isinstance(t.get(name), (int, float))]
            buckets, total = _histogram(values)
            family.add_metric([name.removesuffix("_s")], buckets, total)
        yield family

    def _webhooks(self):
        family = GaugeMetricFamily("genline_webhook_deliveries", "Webhook delivery attempts in the log, by outcome",
                                   labels=["outcome"])
        delivered = db.session.execute(
            select(WebhookDelivery.delivered, WebhookDelivery.status_code.is_(None), func.count())
            .group_by(WebhookDelivery.delivered, WebhookDelivery.status_code.is_(None))
        ).all()
        outcome = {"delivered": 0, "http_error": 0, "network_error": 0}
        for ok, no_status, count in delivered:
            outcome["delivered" if ok else ("network_error" if no_status else "http_error")] += count
        for name, count in outcome.items():
            family.add_metric([name], count)
        yield family

    def _queues(self):
        family = GaugeMetricFamily("genline_queue_depth", "Messages waiting in each Celery queue", labels=["queue"])
        try:
            client = events.client()
            for queue in QUEUES:
                keys = [queue] + [f"{queue}{PRIORITY_SEP}{n}" for n in (3, 6, 9)]
                family.add_metric([queue], sum(client.llen(k) for k in keys))
        except Exception:  # noqa: BLE001 - a broker outage must not break the rest of the scrape
            return
        yield family


def _authorize() -> None:
    cfg = config()
    if cfg.metrics_public:
        return
    key = bearer_key()
    if key and cfg.metrics_token and hmac.compare_digest(key.encode(), cfg.metrics_token.encode()):
        return
    if key is None:
        raise ApiError(401, "unauthorized", "metrics need 'Authorization: Bearer' with GENLINE_METRICS_TOKEN "
                                            "(GENLINE_METRICS_PUBLIC=1 makes them public)")
    if tenant_for_key(key) is not None:
        raise ApiError(403, "forbidden", "metrics cover every tenant, so they are for the operator: "
                                         "scrape with GENLINE_METRICS_TOKEN, not an API key")
    raise ApiError(401, "unauthorized", "the metrics token is not valid (GENLINE_METRICS_TOKEN)")


@bp.get("/metrics")
@describe("Prometheus metrics", responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
          errors=(401, 403))
def metrics():
    _authorize()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
