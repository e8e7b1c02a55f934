"""How a step task ends in Celery, so Flower and ``celery events`` show what the attempt did.

The job row decides (``pipeline.worker.steps``); this module only reports the
decision through Celery's own public means:

- an attempt that will be retried ends as ``RETRY`` through ``Task.retry``: the
  next attempt is the same task id sent again, with the countdown and the time
  limits genline computed from the job's budget, and ``max_retries`` set to the
  attempts the budget still allows (the row, not Celery, counts attempts);
- an attempt that ended the job ends as ``FAILURE`` with ``JobFailed``, whose
  text starts with the job's error code;
- a canceled attempt ends as ``REVOKED``: a ``task-revoked`` event (the one
  Celery sends for a revoke) unless Celery already sent it, then ``Ignore`` so
  that no ``task-succeeded`` follows and overrides it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from celery.exceptions import Ignore

from pipeline.adapters import dispatch, tracing
from pipeline.core.errors import GenlineError
from pipeline.core.lifecycle import Step

log = logging.getLogger("genline.taskstate")


class CodedError(Exception):
    """An exception whose text starts with a job error code (``provider_error: ...``)."""

    def __init__(self, code: str, message: str = ""):
        super().__init__(f"{code}: {message}" if message else code)
        self.code, self.message = code, message

    def __reduce__(self):  # a prefork child pickles it to the main process
        return self.__class__, (self.code, self.message)


class JobFailed(CodedError):
    """The attempt ended its job as ``failed``: the task's ``FAILURE``."""


class AttemptFailed(CodedError):
    """The error of an attempt that will be retried: the ``exc`` of the task's ``RETRY``."""


@dataclass
class Ending:
    """What an attempt's end asks of its Celery task (None from ``fail_attempt``: nothing, return).

    ``kind``: ``retry`` (the row recorded the retry; send the step again after
    ``countdown`` seconds, ``left`` more attempts allowed by the budget),
    ``failed`` (the job failed with ``error``) or ``canceled``. ``announced``:
    Celery itself already sent ``task-revoked`` (a revoke that terminated the attempt).
    ``job``: the snapshot the retry's write returned (its new dispatch token, and for a
    failover the next provider), sent instead of the attempt's own.
    """

    kind: str
    error: GenlineError | None = None
    countdown: float = 0.0
    left: int = 1
    announced: bool = False
    job: Any = None


def retrying(error: GenlineError, countdown: float, left: int, job: Any = None) -> Ending:
    return Ending("retry", error, countdown=countdown, left=max(1, left), job=job)


def failed(error: GenlineError) -> Ending:
    return Ending("failed", error)


def canceled(announced: bool = False) -> Ending:
    return Ending("canceled", announced=announced)


def end(task, job, step: Step, ending: Ending | None) -> None:
    """End ``task`` as ``ending`` says: return (SUCCESS), or raise its Retry, JobFailed or Ignore."""
    if ending is None:
        return
    tracing.annotate(outcome=ending.kind)
    if ending.kind == "retry":
        raise retry(task, ending.job or job, step, ending)
    if ending.kind == "failed":
        code, message = (ending.error.code, ending.error.message) if ending.error else ("internal_error", "")
        tracing.failed(code, message)
        raise JobFailed(code, message)
    if ending.kind == "canceled":
        revoke(task, announced=ending.announced)


def retry(task, job, step: Step, ending: Ending):
    """Send ``step`` of ``job`` (a snapshot holding the row's new dispatch token) as a Celery retry of ``task``.

    Returns the ``Retry`` exception to raise. If the broker refuses the send,
    Celery raises ``Reject`` (the message is dropped): the row waits with no
    lease and no in-flight marker, so the reaper sends the step again.
    """
    options = dispatch.step_options(job, step, ending.countdown)
    options.pop("countdown", None)
    error = ending.error
    exc = AttemptFailed(error.code, error.message) if error is not None else None
    try:
        # countdown=0 must be given: None would mean Celery's default delay (3 minutes).
        sent = task.retry(exc=exc, countdown=ending.countdown, max_retries=task.request.retries + ending.left,
                          throw=False, **options)
    except Exception as refused:
        log.warning("dispatch failed job_id=%s step=%s error=%s", job.id, Step(step).value, refused)
        raise
    dispatch.mark_inflight(job, ending.countdown)
    return sent


def revoke(task, announced: bool = False) -> None:
    """End ``task`` as ``REVOKED``: the ``task-revoked`` event (unless Celery sent it), then ``Ignore``."""
    if not announced:
        try:
            task.send_event("task-revoked", terminated=False, signum=None, expired=False)
        except Exception as exc:  # noqa: BLE001 - a monitoring event: the job row already says canceled
            log.warning("task-revoked event not sent task_id=%s error=%s", task.request.id, exc)
    raise Ignore()
