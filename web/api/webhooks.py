"""A job's webhook delivery log, and sending its last event again."""
from __future__ import annotations

from flask import Blueprint, jsonify

from pipeline.adapters import webhooks
from pipeline.adapters.publish import send_webhook as send
from pipeline.store import jobs
from web.api.errors import ApiError
from web.api.jobs import get_job_or_404
from web.auth import require_tenant

bp = Blueprint("webhooks", __name__)


@bp.get("/v1/jobs/<job_id>/webhooks")
def delivery_log(job_id: str):
    """Every delivery attempt of the job's webhook, oldest first."""
    job = get_job_or_404(job_id, require_tenant())
    return jsonify({"webhook": job.webhook, "data": webhooks.log_of(job.id)})


@bp.post("/v1/jobs/<job_id>/webhooks/redeliver")
def redeliver(job_id: str):
    """Send the job's latest event its webhook subscribed to again (same webhook-id)."""
    job = get_job_or_404(job_id, require_tenant())
    if not (job.webhook and job.webhook.get("url")):
        raise ApiError(409, "conflict", "the job has no webhook to deliver to")
    event = next((e for e in reversed(jobs.events_after(job.id)) if webhooks.wants(job.webhook, e["type"])), None)
    if event is None:
        wanted = ", ".join(job.webhook.get("events") or [])
        raise ApiError(409, "conflict", f"the job has no event its webhook subscribed to yet ({wanted})")
    if not send(job.id, event["id"], fresh=True, queue=job.priority or "normal"):
        raise ApiError(503, "service_unavailable", "the broker is unavailable; try again shortly", headers={"Retry-After": "5"})
    response = jsonify({"message_id": webhooks.message_id(job.id, event["id"]), "event": event})
    response.status_code = 202
    return response
