"""Turning a validated JobCreate into a stored, dispatched job."""
from __future__ import annotations

import logging

from flask import g
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from pipeline.adapters import dispatch, events, metrics, ssrf, tracing
from pipeline.adapters.inputs import check_ref
from pipeline.core.errors import InvalidInput
from pipeline.core.lifecycle import Step
from pipeline.store import jobs
from pipeline.store.models import Job, db
from pipeline.worker.brokerguard import REFUSALS, probe_write
from web import queueing
from web.api.errors import ApiError
from web.requests import check_text
from web.schemas import JobCreate

log = logging.getLogger("genline.submit")


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid_input", f"{field}: {message}", {field: message})


def resolve_budget(body: JobCreate, cfg) -> tuple[float, float, int]:
    """(timeout_s, deadline_s, max_attempts) with defaults, checked against the caps."""
    b = body.budget
    timeout = b.timeout_s if b.timeout_s is not None else cfg.default_timeout_s
    deadline = b.deadline_s if b.deadline_s is not None else cfg.default_deadline_s
    attempts = b.max_attempts if b.max_attempts is not None else cfg.default_max_attempts
    if timeout > cfg.max_timeout_s:
        raise _invalid("budget.timeout_s", f"must be at most {cfg.max_timeout_s:g} (GENLINE_MAX_TIMEOUT_S)")
    if deadline > cfg.max_deadline_s:
        raise _invalid("budget.deadline_s", f"must be at most {cfg.max_deadline_s:g} (GENLINE_MAX_DEADLINE_S)")
    if attempts > cfg.max_max_attempts:
        raise _invalid("budget.max_attempts", f"must be at most {cfg.max_max_attempts} (GENLINE_MAX_MAX_ATTEMPTS)")
    return timeout, deadline, attempts


def check_against_config(body: JobCreate, cfg) -> None:
    """Limits that depend on the deployment's config."""
    if body.params.simulate is not None and not cfg.allow_simulate:
        raise _invalid("params.simulate", "is not allowed on this deployment (GENLINE_ALLOW_SIMULATE=1 enables it)")
    w, _, h = body.params.size.partition("x")
    if int(w) * int(h) > cfg.max_pixels:
        raise _invalid("params.size", f"is more than the {cfg.max_pixels} pixels allowed (GENLINE_MAX_PIXELS)")
    images = body.inputs.images if body.inputs else []
    if body.operation in ("edit", "inpaint") and not images:
        raise _invalid("inputs.images", f"{body.operation} needs at least one input image")
    if body.operation == "inpaint" and not (body.inputs and body.inputs.mask):
        raise _invalid("inputs.mask", "inpaint needs a mask")
    if body.operation == "generate" and (images or (body.inputs and body.inputs.mask)):
        raise _invalid("inputs", "generate takes no input images; use operation edit or inpaint")
    if body.webhook is not None:
        check_webhook_url(body.webhook.url, cfg)


def check_webhook_url(url: str, cfg) -> None:
    """Refuse a webhook URL into our own network (checked again at every send: DNS changes)."""
    try:
        ssrf.check_url(url, allow_private=cfg.webhook_allow_private, what="webhook.url")
    except InvalidInput as exc:
        raise ApiError(422, "invalid_input", exc.message, {"webhook.url": exc.message}) from None


def check_input_refs(body: JobCreate, tenant_id: str, cfg) -> None:
    """Input references of a known form, and upload ids of this tenant: caught here, not in validate."""
    if not body.inputs:
        return
    refs = [(f"inputs.images[{i}]", ref) for i, ref in enumerate(body.inputs.images)]
    if body.inputs.mask:
        refs.append(("inputs.mask", body.inputs.mask))
    for field, ref in refs:
        try:
            check_ref(ref, field, tenant_id, allow_http=cfg.webhook_allow_private)
        except InvalidInput as exc:
            raise _invalid(field, exc.message.removeprefix(f"{field} ")) from None


def _providers(body: JobCreate, cfg) -> list[str]:
    """The providers the request names, else the deployment's default (GENLINE_DEFAULT_PROVIDER)."""
    if body.provider is None:
        return list(cfg.default_providers)
    return [body.provider] if isinstance(body.provider, str) else list(body.provider)


def build(body: JobCreate, tenant_id: str, cfg, idempotency_key=None, digest=None) -> jobs.NewJob:
    check_against_config(body, cfg)
    check_input_refs(body, tenant_id, cfg)
    timeout, deadline, attempts = resolve_budget(body, cfg)
    return jobs.NewJob(
        tenant_id=tenant_id, operation=body.operation, providers=_providers(body, cfg), prompt=body.prompt,
        params=body.params.model_dump(exclude_none=True), model=body.model,
        inputs=body.inputs.model_dump(exclude_none=True) if body.inputs else None,
        timeout_s=timeout, deadline_s=deadline, max_attempts=attempts, priority=body.priority,
        metadata=body.metadata, webhook=body.webhook.model_dump() if body.webhook else None,
        idempotency_key=idempotency_key, request_sha256=digest,
    )


def idempotent_job(tenant_id: str, key: str):
    """The tenant's job of Idempotency-Key ``key``, if any: read once per request.

    The rate limiter's replay exemption (``web.limits``) reads it before the
    submission does. A database error met there is kept and raised again here:
    Flask-Limiter swallows the first, and reading again would make a request
    on a dead link wait out a second link timeout before its 503.
    """
    seen = g.setdefault("genline_idempotent", {})
    if (tenant_id, key) not in seen:
        try:
            seen[tenant_id, key] = jobs.find_idempotent(tenant_id, key)
        except SQLAlchemyError as exc:
            db.session.rollback()  # no broken transaction left for the next read (a 500, not a 503)
            seen[tenant_id, key] = exc
    found = seen[tenant_id, key]
    if isinstance(found, Exception):
        raise found
    return found


def submit(body: JobCreate, raw: dict, tenant_id: str, cfg, idempotency_key: str | None):
    """Store and dispatch a job. Returns (job, created, positions); an idempotent replay returns the first job.

    ``positions`` maps a created job's id to its queue position, read once its
    first message is on its way, so the pipeline does not wait for the count
    (empty for a replay).
    """
    digest = jobs.request_digest(raw) if idempotency_key else None
    if idempotency_key:
        if len(idempotency_key) > 255:
            raise ApiError(422, "invalid_input", "Idempotency-Key: must be at most 255 characters")
        check_text(idempotency_key, "Idempotency-Key")
        earlier = idempotent_job(tenant_id, idempotency_key)
        if earlier is not None:
            return _replay(earlier, digest), False, {}
    spec = build(body, tenant_id, cfg, idempotency_key, digest)
    queued = []
    try:
        # The queued event is published with the first message's in-flight marker (one round trip).
        job = jobs.create(spec, publish_event=lambda _job_id, event: queued.append(event))
    except IntegrityError:
        db.session.rollback()
        # Two requests with one key raced; the other insert won.
        return _replay(jobs.find_idempotent(tenant_id, idempotency_key), digest), False, {}
    tracing.annotate(job_id=job.id)  # the request's span: its trace is the job's
    # If the broker is down the job stays queued with no marker; the reaper sends it later.
    if not dispatch.send_step(job, Step.VALIDATE, publish=queued) and broker_refuses_writes():
        # A full or read-only Redis stays so until an operator acts: the reaper's sends
        # would be refused too. Take the job back and say so, rather than a 202 that never runs.
        withdraw(job.id)
        raise ApiError(503, "service_unavailable", "the broker refuses new work (Redis is full or read-only); "
                       "nothing was stored, try again shortly", headers={"Retry-After": "5"})
    metrics.job_submitted(job.operation, job.priority, tenant_id)
    log.info("job submitted job_id=%s status=queued operation=%s priority=%s provider=%s",
             job.id, job.operation, job.priority, job.provider)
    return job, True, {job.id: queueing.queue_position(job)}


def broker_refuses_writes() -> bool:
    """True when Redis answers but refuses writes (maxmemory with noeviction, or a read-only replica)."""
    try:
        probe_write(events.client())
    except REFUSALS:
        return True
    except Exception:  # noqa: BLE001 - down or unreachable: the stored job waits for the reaper
        return False
    return False


def withdraw(job_id: str) -> None:
    """Delete a job that was never sent (its events go with it)."""
    db.session.execute(delete(Job).where(Job.id == job_id).execution_options(synchronize_session=False))
    db.session.commit()


def _replay(job, digest):
    if job.request_sha256 != digest:
        raise ApiError(409, "conflict", "this Idempotency-Key was used with a different request body")
    return job
