"""Job actions: cancel, bulk cancel, retry (DESIGN §2)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from pipeline import control
from pipeline.ids import is_id
from web.api.errors import ApiError
from web.api.jobs import get_job_or_404, render
from web.auth import require_tenant
from web.requests import json_body, parse_time
from web.schemas import BulkCancel

bp = Blueprint("actions", __name__)


def _accepted(job):
    response = jsonify(render(job))
    response.status_code = 202
    return response


def _conflict(exc: control.NotAllowed) -> ApiError:
    return ApiError(409, "conflict", exc.message, {"status": exc.job.status if exc.job else None})


def _act(job_id: str, action):
    """Run ``control.cancel`` or ``control.retry`` on the caller's job: 202, 404 or 409."""
    tenant = require_tenant()
    get_job_or_404(job_id, tenant)
    try:
        job = action(job_id, tenant)
    except control.NotAllowed as exc:
        raise _conflict(exc) from None
    return _accepted(job)


@bp.post("/v1/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    """Cancel a queued or processing job: 202 and the job, 409 when it already ended."""
    return _act(job_id, control.cancel)


@bp.post("/v1/jobs/<job_id>/retry")
def retry_job(job_id: str):
    """Resume a failed or canceled job from the step that did not finish; 409 otherwise."""
    return _act(job_id, control.retry)


@bp.post("/v1/jobs/cancel")
def cancel_jobs():
    """Cancel the caller's active jobs matching every filter given (ids, status, created_before)."""
    tenant = require_tenant()
    body, _raw = json_body(BulkCancel)
    if body.ids is None and body.status is None and body.created_before is None:
        raise ApiError(422, "invalid_input", "body: give at least one of ids, status or created_before",
                       {"body": "no filter"})
    bad = [i for i in body.ids or [] if not is_id(i, "job")]
    if bad:
        raise ApiError(422, "invalid_input", f"ids: {bad[0]!r} is not a job id", {"ids": "not a job id"})
    before = parse_time(body.created_before, "created_before")
    canceled = control.cancel_many(tenant, ids=body.ids, statuses=body.status, created_before=before)
    response = jsonify({"canceled": len(canceled), "data": [render(j) for j in canceled]})
    response.status_code = 202
    return response
