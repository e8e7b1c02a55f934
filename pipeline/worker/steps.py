"""Running one step of a job: claim its lease, do the work, record the outcome.

Every step task goes through ``run_step``, so claiming, lease renewal, failure
handling and retries are decided here once. Work functions get a job snapshot
and return the step's output; they never hold a database session while they
call a provider or storage.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from flask import current_app
from sqlalchemy.exc import DBAPIError, OperationalError

from pipeline.service import admission, concurrency, eta
from pipeline.core import budget
from pipeline.adapters import dispatch
from pipeline.worker import failover, leases, slot
from pipeline.store import jobs
from pipeline.core.errors import Canceled, DeadlineExceeded, GenlineError, InternalError, Timeout
from pipeline.core.lifecycle import JobStatus, Step, next_step
from pipeline.store.models import Job, db, utcnow

log = logging.getLogger("genline.steps")

MAX_UPLOAD_ATTEMPTS = 3
"""Attempts of the upload step for storage errors (generate uses the job's max_attempts)."""

DB_ERRORS = (OperationalError, DBAPIError)
DB_RETRY_S = 2.0
DB_RETRIES = 60
"""A step message that cannot reach the database is sent again every 2 s for about 2 minutes."""


def config():
    return current_app.extensions["genline.config"]


def run_step(task, job_id: str, step: Step, work) -> None:
    """Claim ``step`` of ``job_id`` for this message and run ``work(job, owner)``."""
    cfg = config()
    owner = task.request.id or f"local-{time.monotonic_ns()}"
    try:
        if step is Step.GENERATE and not admission.throttle_gate(job_id):
            return  # held queued until its tenant may start another (pipeline.service.admission)
        job = jobs.claim(job_id, step, owner, cfg.lease_s)
    except DB_ERRORS as exc:
        raise _retry_later(task, job_id, step, exc)
    if job is None:
        if step is Step.GENERATE and concurrency.park(job_id):
            return
        _unclaimed(job_id, step)
        return
    if job.lost_count >= cfg.max_lost:
        fail(job, step, InternalError(f"the worker running step {step.value} was lost {job.lost_count} times"),
             where=(Job.lease_owner == owner,))
        return
    log.debug("step started job_id=%s step=%s attempt=%s status=%s", job_id, step.value, job.attempt, job.status)
    started = time.monotonic()
    try:
        with lease_keeper(job_id, owner, cfg.lease_s) as lease:
            output = work(job, owner, lease)
    except SoftTimeLimitExceeded:
        # Also how a cancel's revoke (SIGUSR1) interrupts a running attempt.
        current = jobs.get(job_id)
        if current is not None and current.status == JobStatus.CANCELED.value:
            error = Canceled("the job was canceled")
        else:
            error = Timeout(f"the attempt took longer than {job.timeout_s:g}s")
        fail_attempt(job, step, owner, error, started)
    except DB_ERRORS as exc:
        # Not the attempt's fault: run it again once the database is back (the
        # same task id re-takes its own lease). Errors while recording the
        # outcome below propagate instead; the lease then expires and the reaper acts.
        raise _retry_later(task, job_id, step, exc) from exc
    except GenlineError as exc:
        fail_attempt(job, step, owner, exc, started)
    except Exception as exc:  # noqa: BLE001 - a bug must still end the job, with a log line
        log.exception("step crashed job_id=%s step=%s", job_id, step.value)
        fail_attempt(job, step, owner, InternalError(f"{exc.__class__.__name__}: {exc}"), started)
    else:
        finish(job, step, owner, output, time.monotonic() - started)
    if step is Step.GENERATE:
        slot.after(concurrency.wake, job.tenant_id)  # this job's slot may be free now


def _retry_later(task, job_id: str, step: Step, exc: Exception):
    """The database is down: send this message again in a moment (same task id).

    If the retry cannot be sent either, the job's lease or in-flight marker
    expires and the reaper sends the step again.
    """
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the connection is gone; the pool replaces it
        pass
    log.warning("database unavailable job_id=%s step=%s error=%s", job_id, step.value, exc.__class__.__name__)
    return task.retry(exc=exc, countdown=DB_RETRY_S, max_retries=DB_RETRIES)


def _unclaimed(job_id: str, step: Step) -> None:
    """A message that could not claim its step: fail it if its deadline passed, else drop it."""
    job = jobs.get(job_id)
    if job is None:
        log.info("message dropped job_id=%s step=%s reason=unknown-job", job_id, step.value)
        return
    if (job.status in jobs.ACTIVE_STATUSES and job.step == step.value and job.deadline_at <= utcnow()
            and job.held != "replay"):  # a replay's deadline starts when it is admitted
        fail(job, step, DeadlineExceeded(f"the job passed its deadline of {job.deadline_s:g}s"))
        return
    log.info("message dropped job_id=%s step=%s status=%s reason=not-claimable", job_id, step.value, job.status)


@contextmanager
def lease_keeper(job_id: str, owner: str, lease_s: float):
    """Keep the lease renewed while the step runs (``pipeline.worker.leases``).

    Yields an event that is set once renewal finds the lease gone (the job was
    canceled, or the reaper gave it to another worker).
    """
    renewer = leases.renewer(current_app._get_current_object())
    held = renewer.hold(job_id, owner, lease_s)
    try:
        yield held.lost
    finally:
        renewer.release(held)


@dataclass
class StepResult:
    """What a step's work returns when its end records more than its output.

    ``values``: more job fields; ``stages``: images to stage for upload
    (``staging.rows_of``). Both go into the one write that records the step's end.
    """

    output: Any
    values: dict = field(default_factory=dict)
    stages: list | None = None


def _merge(job, step: Step, output, seconds: float) -> dict:
    timing = dict(job.timing or {})
    timing[f"{step.value}_s"] = round(seconds, 3)
    return timing


def finish(job, step: Step, owner: str, output, seconds: float) -> None:
    """Record a step's output and send the next step (or complete the job after upload).

    One transaction: the compare-and-set on the lease, the output, and (for
    generate) the staged images or (for upload) their removal.
    """
    result = output if isinstance(output, StepResult) else StepResult(output)
    output = result.output
    timing = _merge(job, step, output, seconds)
    step_outputs = dispatch.with_new_token(job.step_outputs)
    step_outputs[step.value] = output
    following = next_step(step)
    values = dict(result.values, step=following.value, step_outputs=step_outputs, timing=timing)
    if step is Step.UPLOAD:
        now = utcnow()
        timing["queued_s"] = jobs.seconds_between(job.created_at, job.started_at)
        timing["total_s"] = jobs.seconds_between(job.created_at, now)
        values.update(outputs=output, progress=1.0, completed_at=now)
        done = jobs.end_step(job.id, step, owner, values, to=JobStatus.COMPLETED, data={"outputs": len(output)},
                             clears_staged=True)
    else:
        done = jobs.end_step(job.id, step, owner, values, stages=result.stages)
    if not done:
        log.info("step result discarded job_id=%s step=%s reason=lease-lost", job.id, step.value)
        return
    log.info("step finished job_id=%s step=%s attempt=%s status=%s seconds=%.3f", job.id, step.value, job.attempt,
             JobStatus.COMPLETED.value if step is Step.UPLOAD else job.status, seconds)
    job.step, job.step_outputs = following.value, step_outputs
    # On a compute slot these run behind the task, which returns now (pipeline.worker.slot).
    slot.after(_record_eta, job, step, seconds)
    slot.send_after(dispatch.send_step, job, following)


def _record_eta(job, step: Step, seconds: float) -> None:
    """Feed the ETA history (``pipeline.service.eta``): a generate's duration, and a completed job's start-to-finish."""
    if step is Step.GENERATE:
        eta.record("generate", job.provider, seconds)
    elif step is Step.UPLOAD and job.started_at is not None:
        eta.record("job", job.provider, jobs.seconds_between(job.started_at, utcnow()))


def fail_attempt(job, step: Step, owner: str, error: GenlineError, started: float) -> None:
    """An attempt failed: retry it with backoff if budget allows, else fail the job."""
    if isinstance(error, Canceled):
        log.info("step stopped job_id=%s step=%s reason=canceled", job.id, step.value)
        return
    now = utcnow()
    elapsed_ms = round((time.monotonic() - started) * 1000)
    tries = generate_tries(job) if step is Step.GENERATE else _upload_tries(job)
    limit = job.max_attempts if step is Step.GENERATE else MAX_UPLOAD_ATTEMPTS
    if step is Step.GENERATE and failover.take_over(job, owner, error, tries, elapsed_ms):
        return  # the next provider of the job's list was sent (or the job failed)
    if error.retryable and step in (Step.GENERATE, Step.UPLOAD) and tries < limit:
        delay = budget.retry_delay_s(tries, error.retry_after)
        if not budget.fits_before_deadline(delay, job.deadline_at, now):
            error = DeadlineExceeded(f"no time left for another attempt before the deadline ({error.code}: {error.message})")
        else:
            step_outputs = dispatch.with_new_token(_count_upload_try(job, step))
            retried = jobs.record(
                job.id, "retry", {"step": step.value, "attempt": job.attempt, "elapsed_ms": elapsed_ms,
                                  "error": error.as_dict(step.value), "delay_s": round(delay, 3)},
                where=(Job.lease_owner == owner,), lease_owner=None, lease_until=None,
                step_outputs=step_outputs,
            )
            if retried:
                job.step_outputs = step_outputs
                log.info("step retry job_id=%s step=%s attempt=%s error=%s delay_s=%.2f",
                         job.id, step.value, job.attempt, error.code, delay)
                dispatch.send_step(job, step, countdown=delay)
            return
    if isinstance(error, Timeout) and job.deadline_at - timedelta(seconds=0.5) <= now:
        error = DeadlineExceeded(f"the job passed its deadline of {job.deadline_s:g}s")
    fail(job, step, error, where=(Job.lease_owner == owner,))


def generate_tries(job) -> int:
    """Generate attempts that count against max_attempts: lost ones and those before a retry do not."""
    return job.attempt - job.lost_count - int((job.step_outputs or {}).get("tries_offset", 0))


def hard_timeout(job_id: str, owner: str, seconds: float) -> None:
    """The pool killed the process running ``owner``'s attempt at its hard time limit.

    Called in the worker's main process, so the attempt ends the same way a soft
    timeout does (a ``timeout`` attempt, retried within budget), not as a lost worker.
    """
    job = jobs.get(job_id)
    if job is None or job.lease_owner != owner or job.status not in jobs.ACTIVE_STATUSES:
        return
    log.warning("hard time limit job_id=%s step=%s attempt=%s seconds=%.1f", job_id, job.step, job.attempt, seconds)
    error = Timeout(f"the attempt took longer than {job.timeout_s:g}s and was killed")
    fail_attempt(job, Step(job.step), owner, error, time.monotonic() - seconds)


def _upload_tries(job) -> int:
    return int((job.step_outputs or {}).get("upload_tries", 0)) + 1


def _count_upload_try(job, step: Step) -> dict:
    outputs = dict(job.step_outputs or {})
    if step is Step.UPLOAD:
        outputs["upload_tries"] = _upload_tries(job)
    return outputs


def fail(job, step: Step, error: GenlineError, where: tuple = ()) -> bool:
    """Move the job to ``failed`` with ``error`` and send notify; False if it had moved on."""
    body = error.as_dict(step.value)
    done = jobs.transition(job.id, JobStatus.FAILED, where=where, error=body, data={"error": body})
    if done:
        log.info("job failed job_id=%s step=%s attempt=%s status=failed error=%s", job.id, step.value, job.attempt, error.code)
        dispatch.send_step(job, Step.NOTIFY)
    return done
