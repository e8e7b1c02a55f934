"""/metrics: Prometheus text of genline's counters and histograms, jobs by status and queue depth.

Counters and histograms are recorded where things happen, by every web and worker
process (``pipeline.adapters.metrics``; with PROMETHEUS_MULTIPROC_DIR, every
process on this host). The two gauges are read at scrape time by cheap queries:
jobs by status (a grouped count) and each queue's depth (the broker's message count, kombu's public queue_declare). The
numbers are every tenant's together, so they are for the operator: public only
with GENLINE_METRICS_PUBLIC=1, otherwise the scraper sends ``Authorization:
Bearer`` with GENLINE_METRICS_TOKEN. A tenant's API key is refused (403): it
would show one tenant every other tenant's volume.
"""
from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from pipeline.adapters import broker
from pipeline.adapters import metrics as recorded
from pipeline.core.lifecycle import STATUSES
from pipeline.store.models import Job, db
from pipeline.worker.celery_app import QUEUES
from web.api.errors import ApiError
from web.api.openapi import describe
from web.auth import bearer_key, config, tenant_for_key

bp = Blueprint("metrics", __name__)


class Gauges:
    """Jobs by status and queue depth, read at scrape time."""

    def collect(self):
        try:
            yield from self._jobs()
        finally:
            db.session.rollback()
        yield from self._queues()

    def _jobs(self):
        family = GaugeMetricFamily("genline_jobs", "Jobs by status (as kept by retention)", labels=["status"])
        counts = dict(db.session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
        for status in STATUSES:
            family.add_metric([status], counts.get(status, 0))
        yield family

    def _queues(self):
        family = GaugeMetricFamily("genline_queue_depth", "Messages waiting in each Celery queue", labels=["queue"])
        try:
            depths = broker.queue_depths(current_app.extensions["celery"], QUEUES)
        except Exception:  # noqa: BLE001 - a broker outage must not break the rest of the scrape
            return
        for queue, depth in depths.items():
            family.add_metric([queue], depth)
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
    return Response(generate_latest(recorded.registry(Gauges())), content_type=CONTENT_TYPE_LATEST)
