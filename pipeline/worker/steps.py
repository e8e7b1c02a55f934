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
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from flask import current_app
from greenlet import GreenletExit
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from pipeline.adapters import dispatch, logs, metrics, tracing
from pipeline.adapters.storage import attempt_dir, open_storage
from pipeline.core import budget
from pipeline.core.errors import Canceled, DeadlineExceeded, GenlineError, InternalError, StorageError, Timeout
from pipeline.core.lifecycle import JobStatus, Step, next_step
from pipeline.core.runstate import RunState
from pipeline.service import admission, concurrency, eta
from pipeline.store import jobs
from pipeline.store.models import db, utcnow
from pipeline.worker import failover, leases, slot, softlimit, taskstate
from pipeline.worker.failing import fail

__all__ = ["StepResult", "fail", "fail_attempt", "finish", "generate_tries", "hard_timeout", "run_step"]

log = logging.getLogger("genline.steps")

MAX_UPLOAD_ATTEMPTS = 3
"""Attempts of the upload step for storage errors (generate uses the job's max_attempts)."""

DB_ERRORS = (OperationalError, DBAPIError, PoolTimeout)
DB_RETRY_S = 2.0
DB_RETRIES = 60
"""A step message that cannot reach the database is sent again every 2 s for about 2 minutes."""


def config():
    return current_app.extensions["genline.config"]


def run_step(task, job_id: str, step: Step, work) -> None:
    """Claim ``step`` of ``job_id`` for this message and run ``work(job, owner)``.

    The task then ends as the attempt did (``pipeline.worker.taskstate``): SUCCESS,
    RETRY (the next attempt is this task sent again), FAILURE or REVOKED.
    """
    cfg = config()
    owner = task.request.id or f"local-{time.monotonic_ns()}"
    try:
        if step is Step.GENERATE and not admission.throttle_gate(job_id):
            return  # held queued until its tenant may start another (pipeline.service.admission)
        job = jobs.claim(job_id, step, owner, cfg.lease_s)
    except DB_ERRORS as exc:
        raise _retry_later(task, job_id, step, exc) from exc
    if job is None:
        if step is Step.GENERATE and concurrency.park(job_id):
            return
        taskstate.end(task, None, step, _unclaimed(job_id, step))
        return
    if job.lost_count >= cfg.max_lost:
        error = InternalError(f"the worker running step {step.value} was lost {job.lost_count} times")
        done = fail(job, step, error, owner=owner)
        taskstate.end(task, job, step, taskstate.failed(error) if done else None)
        return
    metrics.step_attempt(step.value)
    if step is Step.GENERATE and job.attempt == 1:  # the job's first generate: its time in the queue ends
        metrics.job_started(job.priority, job.provider, jobs.seconds_between(job.created_at, job.started_at))
    logs.bind(job_id=job_id, step=step.value, attempt=job.attempt, status=job.status)  # cleared when the task ends
    log.debug("step started job_id=%s step=%s attempt=%s status=%s", job_id, step.value, job.attempt, job.status)
    tracing.annotate(job_id=job_id, step=step.value, attempt=job.attempt, provider=job.provider)
    started = time.monotonic()
    ending = None
    try:
        with lease_keeper(job_id, owner, cfg.lease_s) as lease:
            output = work(job, owner, lease)
    except SoftTimeLimitExceeded:
        # A soft limit that fired after a cancel: the job says which it was.
        current = jobs.get(job_id)
        if current is not None and current.status == JobStatus.CANCELED.value:
            error = Canceled("the job was canceled")
        else:
            error = Timeout(f"the attempt took longer than {job.timeout_s:g}s")
        ending = fail_attempt(job, step, owner, error, started, announced=True)
    except GreenletExit:
        # Under gevent a cancel's revoke kills the attempt's greenlet: Celery has sent
        # task-revoked; ending as REVOKED keeps its task-succeeded from following.
        current = jobs.get(job_id)
        if current is None or current.status != JobStatus.CANCELED.value:
            raise
        log.info("step stopped job_id=%s step=%s reason=canceled", job_id, step.value)
        ending = taskstate.canceled(announced=True)
    except DB_ERRORS as exc:
        # Not the attempt's fault: run it again once the database is back (the
        # same task id re-takes its own lease). Errors while recording the
        # outcome below propagate instead; the lease then expires and the reaper acts.
        raise _retry_later(task, job_id, step, exc) from exc
    except GenlineError as exc:
        # The work is over, its soft limit maybe not: the end is written where the limit
        # cannot land (pipeline.worker.softlimit). A limit that landed above does not again.
        ending = softlimit.shielded(job_id, fail_attempt, job, step, owner, exc, started)
    except Exception as exc:  # noqa: BLE001 - a bug must still end the job, with a log line
        log.exception("step crashed job_id=%s step=%s", job_id, step.value)
        error = InternalError(f"{exc.__class__.__name__}: {exc}")
        ending = softlimit.shielded(job_id, fail_attempt, job, step, owner, error, started)
    else:
        softlimit.shielded(job_id, finish, job, step, owner, output, time.monotonic() - started)
    if step is Step.GENERATE:
        with tracing.detached():  # the jobs it wakes are not this job's
            slot.after(concurrency.wake, job.tenant_id)  # this job's slot may be free now
    taskstate.end(task, job, step, ending)


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


def _unclaimed(job_id: str, step: Step) -> taskstate.Ending | None:
    """A message that could not claim its step: fail it if its deadline passed, else drop it.

    A message of a canceled job ends as canceled (REVOKED); the others that are dropped do nothing.
    """
    job = jobs.get(job_id)
    if job is None:
        log.info("message dropped job_id=%s step=%s reason=unknown-job", job_id, step.value)
        return None
    if (job.status in jobs.ACTIVE_STATUSES and job.step == step.value and job.deadline_at <= utcnow()
            and job.held != "replay"):  # a replay's deadline starts when it is admitted
        error = DeadlineExceeded(f"the job passed its deadline of {job.deadline_s:g}s")
        return taskstate.failed(error) if fail(job, step, error) else None
    log.info("message dropped job_id=%s step=%s status=%s reason=not-claimable", job_id, step.value, job.status)
    if job.status == JobStatus.CANCELED.value and job.step == step.value:
        return taskstate.canceled()
    return None


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
    metrics.step_ended(step.value, "ok" if done else "discarded", seconds)
    if not done:
        log.info("step result discarded job_id=%s step=%s reason=lease-lost", job.id, step.value)
        if step is Step.UPLOAD:
            _remove_attempt_outputs(job.id, owner)
        return
    log.info("step finished job_id=%s step=%s attempt=%s status=%s seconds=%.3f", job.id, step.value, job.attempt,
             JobStatus.COMPLETED.value if step is Step.UPLOAD else job.status, seconds)
    if step is Step.UPLOAD:
        metrics.job_finished(JobStatus.COMPLETED.value, None, job.operation, timing["total_s"], job.tenant_id)
        if job.lost_count or RunState.of(job).upload_tries:
            slot.after(_remove_other_attempts_outputs, job.id, [o["key"] for o in output])
    # On a compute slot these run behind the task, which returns now (pipeline.worker.slot).
    slot.after(_record_eta, job, step, seconds)
    slot.send_after(dispatch.send_step, replace(job, step=following.value, step_outputs=step_outputs), following)


def _remove_attempt_outputs(job_id: str, owner: str) -> None:
    """Delete what a fenced upload attempt stored: its own folder, which no job row points to
    (``storage.attempt_dir``). Best effort: retention deletes the job's whole folder later."""
    try:
        open_storage(config()).delete_prefix(f"outputs/{job_id}/{attempt_dir(owner)}/")
    except StorageError as exc:
        log.warning("fenced outputs kept job_id=%s error=%s", job_id, exc)


def _remove_other_attempts_outputs(job_id: str, kept: list[str]) -> None:
    """Delete what earlier upload attempts of a completed job stored, beside its outputs.

    An attempt that ended without reaching its end wrote to its own folder and nothing
    points to it: a pool process killed mid-upload (or terminated by Celery when the
    broker connection drops under a late-ack task), or a retried attempt that stored
    some of its outputs before its error. Only jobs with a lost or retried attempt look.
    Best effort, like ``_remove_attempt_outputs``.
    """
    try:
        removed = open_storage(config()).delete_prefix(f"outputs/{job_id}/", keep=kept)
    except StorageError as exc:
        log.warning("earlier attempts' outputs kept job_id=%s error=%s", job_id, exc)
        return
    if removed:
        log.info("earlier attempts' outputs removed job_id=%s objects=%s", job_id, removed)


def _record_eta(job, step: Step, seconds: float) -> None:
    """Feed the ETA history (``pipeline.service.eta``): a generate's duration, and a completed job's start-to-finish."""
    if step is Step.GENERATE:
        eta.record("generate", job.provider, seconds)
    elif step is Step.UPLOAD and job.started_at is not None:
        eta.record("job", job.provider, jobs.seconds_between(job.started_at, utcnow()))


def fail_attempt(job, step: Step, owner: str, error: GenlineError, started: float,
                 announced: bool = False) -> taskstate.Ending | None:
    """An attempt failed: record a retry with backoff if budget allows, else fail the job.

    Returns how the attempt's task is to end; for a retry the caller sends the
    step again (``taskstate.end`` as a Celery retry, or ``dispatch.send_step``).
    None: the attempt's lease was lost, nothing to report. ``announced``: a
    cancel's revoke interrupted the attempt (Celery reported it).
    """
    metrics.step_ended(step.value, "canceled" if isinstance(error, Canceled) else "error", time.monotonic() - started)
    if isinstance(error, Canceled):
        # Also how an attempt stops whose lease the reaper gave away (its worker was cut
        # off past its lease): that one was not canceled, and its log says so.
        current = jobs.get(job.id)
        canceled = current is not None and current.status == JobStatus.CANCELED.value
        log.info("step stopped job_id=%s step=%s reason=%s", job.id, step.value, "canceled" if canceled else "lease-lost")
        return taskstate.canceled(announced=announced) if canceled else None
    now = utcnow()
    elapsed_ms = round((time.monotonic() - started) * 1000)
    tries = generate_tries(job) if step is Step.GENERATE else _upload_tries(job)
    limit = job.max_attempts if step is Step.GENERATE else MAX_UPLOAD_ATTEMPTS
    if step is Step.GENERATE:
        taken = failover.take_over(job, owner, error, tries, elapsed_ms)
        if taken is not failover.NOT_TAKEN:
            return taken  # the next provider of the job's list is to be sent (or the job failed)
    if error.retryable and step in (Step.GENERATE, Step.UPLOAD) and tries < limit:
        delay = budget.retry_delay_s(tries, error.retry_after)
        if not budget.fits_before_deadline(delay, job.deadline_at, now):
            error = DeadlineExceeded(f"no time left for another attempt before the deadline ({error.code}: {error.message})")
        else:
            state = RunState.of(job).with_new_token()
            if step is Step.UPLOAD:
                state = replace(state, upload_tries=_upload_tries(job))
            retried = jobs.record(
                job.id, "retry", {"step": step.value, "attempt": job.attempt, "elapsed_ms": elapsed_ms,
                                  "error": error.as_dict(step.value), "delay_s": round(delay, 3)},
                owner=owner, lease_owner=None, lease_until=None, step_outputs=state.into(job.step_outputs),
            )
            if not retried:
                return None
            metrics.step_retried(step.value, error.code)
            log.info("step retry job_id=%s step=%s attempt=%s error=%s delay_s=%.2f",
                     job.id, step.value, job.attempt, error.code, delay)
            return taskstate.retrying(error, delay, limit - tries, job=retried.job)
    if isinstance(error, Timeout) and job.deadline_at - timedelta(seconds=0.5) <= now:
        error = DeadlineExceeded(f"the job passed its deadline of {job.deadline_s:g}s")
    return taskstate.failed(error) if fail(job, step, error, owner=owner) else None


def generate_tries(job) -> int:
    """Generate attempts that count against max_attempts: lost ones and those before a retry do not."""
    return job.attempt - job.lost_count - RunState.of(job).tries_offset


def hard_timeout(job_id: str, owner: str, seconds: float) -> None:
    """The pool killed the process running ``owner``'s attempt at its hard time limit.

    Run by the ``genline.hard_timeout`` task the worker's main process sends
    (``pipeline.worker.hardlimit``), so the attempt ends the same way a soft
    timeout does (a ``timeout`` attempt, retried within budget), not as a lost worker.
    """
    job = jobs.get(job_id)
    if job is None or job.lease_owner != owner or job.status not in jobs.ACTIVE_STATUSES:
        return
    log.warning("hard time limit job_id=%s step=%s attempt=%s seconds=%.1f", job_id, job.step, job.attempt, seconds)
    error = Timeout(f"the attempt took longer than {job.timeout_s:g}s and was killed")
    step = Step(job.step)
    ending = fail_attempt(job, step, owner, error, time.monotonic() - seconds)
    if ending is not None and ending.kind == "retry":
        # No task runs here to retry: the attempt's task already ended (Celery's
        # TimeLimitExceeded); the next attempt goes out as a new message.
        dispatch.send_step(ending.job or job, step, countdown=ending.countdown)


def _upload_tries(job) -> int:
    """This upload attempt's number: the failed ones so far, plus one."""
    return RunState.of(job).upload_tries + 1
