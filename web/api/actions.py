"""Job actions: cancel, bulk cancel, retry, bulk replay and the failed-jobs view (DESIGN §2)."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from flask import Blueprint, jsonify

from pipeline.core.ids import is_id
from pipeline.service import admission, control, replay
from pipeline.store.models import utcnow
from web import responses as out
from web.api.errors import ApiError
from web.api.jobs import get_job_or_404, render
from web.api.openapi import describe
from web.auth import caller_id, config, require_tenant
from web.requests import json_body, parse_time, query
from web.schemas import BulkCancel, BulkReplay, FailureQuery

bp = Blueprint("actions", __name__)


def _accepted(job):
    response = jsonify(render(job))
    response.status_code = 202
    return response


def _conflict(exc: control.NotAllowed) -> ApiError:
    return ApiError(409, "conflict", exc.message, {"status": exc.job.status if exc.job else None})


def _act(job_id: str, action, **kwargs):
    """Run ``control.cancel`` or ``control.retry`` on the caller's job: 202, 404 or 409."""
    tenant = require_tenant()
    get_job_or_404(job_id, tenant)
    try:
        job = action(job_id, tenant, **kwargs)
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
    return _act(job_id, control.retry, by=caller_id())


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


def _ids(ids: list | None) -> None:
    bad = [i for i in ids or [] if not is_id(i, "job")]
    if bad:
        raise ApiError(422, "invalid_input", f"ids: {bad[0]!r} is not a job id", {"ids": "not a job id"})


@bp.post("/v1/jobs/retry")
@describe("Replay failed or canceled jobs by filter", body=BulkReplay,
          responses={202: out.Replayed, 200: out.Replayed}, errors=(400, 401, 403, 413, 415, 422))
def replay_jobs():
    """Re-queue the caller's failed or canceled jobs matching every filter given, oldest first.

    Answers at once: each job resumes from the step that did not finish and
    enters the queues at the replay admission rate (GENLINE_REPLAY_RATE), behind
    live traffic. At most ``limit`` jobs per call; pass ``next_cursor`` as
    ``cursor`` to go on. ``dry_run``: only say what would be replayed (200).
    """
    tenant = require_tenant()
    body, _raw = json_body(BulkReplay)
    if body.tenant is not None:
        raise ApiError(403, "forbidden", "tenant: only operators replay across tenants (genline jobs retry --tenant); "
                       "an API key replays its own tenant's jobs", {"tenant": "operators only"})
    _ids(body.ids)
    if body.cursor is not None and not is_id(body.cursor, "job"):
        raise ApiError(422, "invalid_input", "cursor: is not a cursor this API returned", {"cursor": "invalid"})
    flt = replay.Filter(tenant=tenant, ids=body.ids, status=body.status, error_code=body.error_code,
                        provider=body.provider, operation=body.operation, step=body.step,
                        created_after=parse_time(body.created_after, "created_after"),
                        created_before=parse_time(body.created_before, "created_before"))
    if flt.is_empty():
        raise ApiError(422, "invalid_input", "body: give at least one filter (ids, status, error_code, provider, "
                       "operation, step, created_after or created_before)", {"body": "no filter"})
    result = replay.replay(flt, caller_id(), limit=body.limit, after=body.cursor, dry_run=body.dry_run).as_dict()
    for job in result["jobs"]:
        job.pop("tenant")
    result["admission"] = {"rate": config().replay_rate, "waiting": admission.waiting(tenant)}
    response = jsonify(result)
    response.status_code = 200 if body.dry_run else 202
    return response


@bp.get("/v1/jobs/failures")
@describe("Failed jobs grouped by error code, provider and step", query=FailureQuery,
          responses={200: out.Failures}, errors=(401, 422))
def job_failures():
    """The caller's failed jobs created in the window, grouped by error code, provider and step.

    Each group has its count, first and last failure, the latest message, and
    the filter that lists (``links.list``) or replays (``filter`` as the body of
    POST /v1/jobs/retry) exactly its jobs.
    """
    tenant = require_tenant()
    q = query(FailureQuery)
    after = parse_time(q.created_after, "created_after") or (utcnow() - timedelta(days=1)).replace(microsecond=0)
    before = parse_time(q.created_before, "created_before")
    groups = replay.failures(tenant, after, before)
    for group in groups:
        listed = {k: v if isinstance(v, str) else ",".join(v) for k, v in group["filter"].items()}
        group["links"] = {"list": "/v1/jobs?" + urlencode(listed), "replay": "/v1/jobs/retry"}
    return jsonify({"created_after": replay.iso(after), "created_before": replay.iso(before),
                    "total": sum(g["count"] for g in groups), "groups": groups})
