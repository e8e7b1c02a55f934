"""Jobs: submit, read, list."""
from __future__ import annotations

import base64
import binascii
import hashlib
import json

from flask import Blueprint, jsonify, request, url_for
from sqlalchemy import null, select

from pipeline.core.ids import is_id
from pipeline.core.lifecycle import STATUSES, JobStatus
from pipeline.service.representation import job_to_dict
from pipeline.store import jobs
from pipeline.store.models import Job, db, utcnow
from pipeline.worker import reaper
from web import limits, waiting
from web.api.errors import ApiError
from web.auth import config, reader_for_job, require_tenant
from web.queueing import estimates, queue_position, queue_positions, with_positions
from web.requests import json_body, parse_time, preference_applied, query, wait_seconds
from web.schemas import JobCreate, JobList
from web.submit import submit

bp = Blueprint("jobs", __name__)


BROWSER_HIDDEN = ("webhook", "metadata")
"""Fields a job-token (browser) view shows as null: server-side settings a browser never needs."""


def base_url() -> str:
    """GENLINE_PUBLIC_URL when set; else the request's own host (development only: a client controls Host)."""
    cfg = config()
    return cfg.public_url if cfg.public_url_set else request.host_url


def render(job, positions: dict | None = None, browser: bool = False, etas: dict | None = None) -> dict:
    """The job for the API; its queue position from ``positions`` (by id) when already known.

    ``browser``: the view of a job-token holder, without the fields in ``BROWSER_HIDDEN``.
    ``etas``: estimates by id (``web.queueing.estimates``), computed here when not given.
    """
    if positions is None or job.id not in positions:
        positions = queue_positions([job])
    if etas is None or job.id not in etas:
        etas = estimates([job], positions, config())
    out = job_to_dict(job, config(), base_url(), positions[job.id], etas[job.id])
    if browser:
        out.update(dict.fromkeys(BROWSER_HIDDEN))
    return out


def etag_of(rendered: dict) -> str:
    """A digest of what a job says, without its links (their tokens and signatures are fresh each time).

    The estimates are left out too: they are recomputed from the clock at every
    read, and a poller's 304 should mean "nothing happened to the job".
    """
    stable = {k: v for k, v in rendered.items() if k not in ("urls", "estimated_start_at", "estimated_finish_at")}
    stable["outputs"] = [{k: v for k, v in o.items() if k != "url"} for o in rendered.get("outputs") or []]
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:32]


def get_job_or_404(job_id: str, tenant_id: str | None):
    """The job, or 404 (also for another tenant's job and for malformed ids)."""
    job = jobs.get(job_id, tenant_id) if is_id(job_id, "job") else None
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}")
    # The reaper fails jobs past their deadline; a read does it too, so a reader never
    # sees a job stuck `processing` past its deadline while no beat is alive.
    if reaper.overdue(job, utcnow()) and reaper.fail_overdue(job):
        job = jobs.get(job_id, tenant_id)
    return job


@bp.post("/v1/jobs")
@limits.submissions
def create_job():
    tenant = require_tenant()
    body, raw = json_body(JobCreate)
    wait = wait_seconds()
    job, created, positions = submit(body, raw, tenant, config(), request.headers.get("Idempotency-Key"))
    if wait:
        job, positions = waiting.until_terminal(job.id, wait) or job, None
    response = jsonify(render(job, positions))
    response.status_code = 202 if created else 200
    response.headers["Location"] = url_for("jobs.read_job", job_id=job.id)
    return preference_applied(response)


@bp.get("/v1/jobs/<job_id>")
def read_job(job_id: str):
    tenant = reader_for_job(job_id)
    job = get_job_or_404(job_id, tenant)
    wait = wait_seconds()
    if wait:
        job = waiting.until_terminal(job.id, wait) or job
    rendered = render(job, browser=tenant is None)
    response = jsonify(rendered)
    # A poller sends If-None-Match and gets 304 while nothing changed.
    response.set_etag(etag_of(rendered), weak=True)
    response.headers["Cache-Control"] = "private, no-cache"
    return preference_applied(response.make_conditional(request))


def _cursor_id(cursor: str) -> str:
    try:
        value = base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        value = ""
    if not is_id(value, "job"):
        raise ApiError(422, "invalid_input", "cursor: is not a cursor this API returned", {"cursor": "invalid"})
    return value


@bp.get("/v1/jobs")
def list_jobs():
    """Newest first, keyset-paginated on the time-ordered id."""
    tenant = require_tenant()
    q = query(JobList)
    stmt = select(Job).where(Job.tenant_id == tenant)
    if q.status:
        statuses = [s.strip() for s in q.status.split(",") if s.strip()]
        bad = [s for s in statuses if s not in STATUSES]
        if bad:
            raise ApiError(422, "invalid_input", f"status: unknown status {bad[0]!r}", {"status": "unknown status"})
        stmt = stmt.where(Job.status.in_(statuses))
    if q.operation:
        stmt = stmt.where(Job.operation == q.operation)
    if q.error_code:  # the failures view's links list a group by these
        stmt = stmt.where(Job.error["code"].as_string() == q.error_code)
    if q.provider:
        stmt = stmt.where(Job.provider == q.provider)
    if q.step:
        stmt = stmt.where(Job.step == q.step)
    after, before = parse_time(q.created_after, "created_after"), parse_time(q.created_before, "created_before")
    if after:
        stmt = stmt.where(Job.created_at > after)
    if before:
        stmt = stmt.where(Job.created_at < before)
    if q.cursor:
        stmt = stmt.where(Job.id < _cursor_id(q.cursor))
    # The ranking reads every queued job: only where the page can hold one.
    ranked = with_positions(stmt) if not q.status or JobStatus.QUEUED.value in statuses else stmt.add_columns(null())
    rows = db.session.execute(ranked.order_by(Job.id.desc()).limit(q.limit + 1)).all()
    page = [jobs.snapshot(row[0]) for row in rows[: q.limit]]
    db.session.rollback()
    next_cursor = None
    if len(rows) > q.limit:
        next_cursor = base64.urlsafe_b64encode(page[-1].id.encode()).decode().rstrip("=")
    positions = {job.id: row[1] for job, row in zip(page, rows)}
    for job in page:  # a queued job the ranking leaves out (a priority no longer known) is counted alone
        if job.status == JobStatus.QUEUED.value and positions[job.id] is None:
            positions[job.id] = queue_position(job)
    etas = estimates(page, positions, config())
    return jsonify({"data": [render(j, positions, etas=etas) for j in page], "next_cursor": next_cursor})
