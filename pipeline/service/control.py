"""Cancel and retry: the moves a user or an operator makes on a job.

Both are compare-and-set transitions in the job store, so they race safely with
the workers: a step that finishes after a cancel finds its UPDATE matching no
row (a canceled job never becomes completed), and a retry resumes the job from
the step recorded on the row.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import select

from pipeline.adapters import dispatch, metrics
from pipeline.core.errors import Canceled
from pipeline.core.lifecycle import JobStatus, Step
from pipeline.core.runstate import RunState
from pipeline.service import admission
from pipeline.store import jobs
from pipeline.store.models import Job, db, utcnow

log = logging.getLogger("genline.control")

BULK_LIMIT = 1000
"""At most this many jobs are canceled by one bulk request (call again for more)."""


class NotAllowed(Exception):
    """The job is in a status the move does not apply to (the API answers 409)."""

    def __init__(self, job, message: str):
        super().__init__(message)
        self.job, self.message = job, message


def cancel(job_id: str, tenant_id: str | None = None, *, message: str = "the job was canceled",
           by: str | None = None):
    """Cancel an active job at once; returns its snapshot, None if unknown.

    Raises ``NotAllowed`` when the job is already terminal. ``message`` is the
    job's error message; ``by`` (who asked) goes on the ``canceled`` event.

    A running attempt is not signalled: its cooperative check
    (``pipeline.worker.cancelwatch``, polled by every provider between small
    steps of its work, and by diffusers at each step end) sees the cancel within
    about half a second and unwinds; a provider that never checks is ended by
    the attempt's hard time limit. Celery's ``revoke(terminate=True)`` is not
    used: its signal goes to whichever task the pool process runs when it
    arrives, which may already be another job's.
    """
    job = jobs.get(job_id, tenant_id)
    if job is None:
        return None
    body = Canceled(message).as_dict(job.step)
    data = {"step": job.step}
    if by:
        data["by"] = by
    if not jobs.transition(job.id, JobStatus.CANCELED, error=body, data=data):
        current = jobs.get(job_id, tenant_id)
        raise NotAllowed(current, f"the job is already {current.status}; only queued or processing jobs can be canceled")
    log.info("job canceled job_id=%s step=%s attempt=%s status=canceled", job.id, job.step, job.attempt)
    metrics.job_finished(JobStatus.CANCELED.value, Canceled.code, job.operation,
                         jobs.seconds_between(job.created_at, utcnow()), job.tenant_id)
    dispatch.send_step(job, Step.NOTIFY)
    return jobs.get(job_id)


def cancel_many(tenant_id: str | None, ids=None, statuses=None, created_before: datetime | None = None) -> list:
    """Cancel every active job matching all the given filters; returns the canceled snapshots."""
    stmt = select(Job.id).where(Job.status.in_(statuses or jobs.ACTIVE_STATUSES))
    if tenant_id is not None:
        stmt = stmt.where(Job.tenant_id == tenant_id)
    if ids is not None:
        stmt = stmt.where(Job.id.in_(list(ids)))
    if created_before is not None:
        stmt = stmt.where(Job.created_at < created_before)
    found = db.session.execute(stmt.order_by(Job.id).limit(BULK_LIMIT)).scalars().all()
    db.session.rollback()
    canceled = []
    for job_id in found:
        try:
            job = cancel(job_id, tenant_id)
        except NotAllowed:
            continue  # it ended between the select and the cancel
        if job is not None:
            canceled.append(job)
    return canceled


def retry(job_id: str, tenant_id: str | None = None, by: str | None = None):
    """Queue a failed or canceled job again from the step that did not finish.

    The job gets a fresh deadline and a fresh count of attempts; outputs a
    finished step recorded (staged images before upload) are kept, so an upload
    failure is retried without generating again. ``by``: who asked (a key id or
    ``operator``), recorded on the ``queued`` event. Raises ``NotAllowed`` otherwise.
    """
    job = jobs.get(job_id, tenant_id)
    if job is None:
        return None
    if Step(job.step or Step.VALIDATE.value) is Step.NOTIFY:
        raise NotAllowed(job, f"the job is {job.status} and has nothing left to run")
    if not requeue(job, by):
        current = jobs.get(job_id, tenant_id)
        raise NotAllowed(current, f"the job is {current.status}; only failed or canceled jobs can be retried")
    job = jobs.get(job_id)
    # With the broker down the job stays queued without a marker; the reaper sends it.
    dispatch.send_step(job, Step(job.step))
    return job


def _requeue_values(job, by: str | None, replay: bool, now: datetime) -> tuple[dict, dict]:
    """The row values and event data of a failed or canceled job queued again at its unfinished step."""
    step = Step(job.step or Step.VALIDATE.value)
    # A fresh dispatch token: the marker of the job's earlier message must not cover the next one.
    state = replace(RunState.of(job).with_new_token(), upload_tries=0, tries_offset=job.attempt)
    step_outputs = state.into(job.step_outputs)
    values = dict(step=step.value, error=None, completed_at=None, progress=None, lease_owner=None,
                  lease_until=None, lost_count=0, step_outputs=step_outputs,
                  deadline_at=now + timedelta(seconds=job.deadline_s),
                  held=admission.REPLAY if replay else None, admit_at=now if replay else None)
    data = {"step": step.value, "retry": True}
    if by:
        data["by"] = by
    if replay:
        data["replay"] = True
    return values, data


def requeue(job, by: str | None = None) -> bool:
    """Move a failed or canceled job (a snapshot) back to ``queued`` at the step that did not finish.

    A hold the job had when it ended is over. False when the job moved on.
    """
    if Step(job.step or Step.VALIDATE.value) is Step.NOTIFY:
        return False
    values, data = _requeue_values(job, by, False, utcnow())
    moved = jobs.transition(job.id, JobStatus.QUEUED, expect=(JobStatus.FAILED, JobStatus.CANCELED),
                            data=data, **values)
    if moved:
        log.info("job retried job_id=%s step=%s attempt=%s status=queued by=%s", job.id, job.step, job.attempt, by)
    return moved


def replay_many(found: list, by: str) -> set[str]:
    """Re-queue failed or canceled jobs (snapshots) for a bulk replay; returns the ids moved.

    Each move is a compare-and-set on the very state the replay read (its
    ``event_seq``), so two replays of the same failure move it once. The jobs
    are held for admission (``pipeline.service.admission``) instead of being sent,
    and their deadline starts again when they are admitted. One commit for all.
    """
    now = utcnow()
    moves = [(job, *_requeue_values(job, by, True, now)) for job in found
             if Step(job.step or Step.VALIDATE.value) is not Step.NOTIFY]
    moved = set(jobs.transition_seen(moves, JobStatus.QUEUED))
    for job in found:
        if job.id in moved:
            log.info("job replayed job_id=%s step=%s attempt=%s status=queued by=%s", job.id, job.step, job.attempt, by)
    return moved
