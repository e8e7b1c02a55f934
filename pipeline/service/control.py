"""Cancel and retry: the moves a user or an operator makes on a job.

Both are compare-and-set transitions in the job store, so they race safely with
the workers: a step that finishes after a cancel finds its UPDATE matching no
row (a canceled job never becomes completed), and a retry resumes the job from
the step recorded on the row.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from pipeline.adapters import dispatch
from pipeline.core.errors import Canceled
from pipeline.core.lifecycle import JobStatus, Step
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


def cancel(job_id: str, tenant_id: str | None = None):
    """Cancel an active job at once; returns its snapshot, None if unknown.

    Raises ``NotAllowed`` when the job is already terminal.
    """
    job = jobs.get(job_id, tenant_id)
    if job is None:
        return None
    body = Canceled("the job was canceled").as_dict(job.step)
    if not jobs.transition(job.id, JobStatus.CANCELED, error=body, data={"step": job.step}):
        current = jobs.get(job_id, tenant_id)
        raise NotAllowed(current, f"the job is already {current.status}; only queued or processing jobs can be canceled")
    log.info("job canceled job_id=%s step=%s attempt=%s status=canceled", job.id, job.step, job.attempt)
    stop_running(job)
    dispatch.send_step(job, Step.NOTIFY)
    return jobs.get(job_id)


def stop_running(job) -> None:
    """Backstop of the provider's cooperative cancel check: revoke the step's task.

    The signal is SIGUSR1, which a prefork pool child turns into
    ``SoftTimeLimitExceeded`` inside the task, so the attempt unwinds (its writes
    then match no row) instead of the process being killed. Revoking also drops
    a copy of the message that a worker has not started yet.
    """
    if not job.task_id:
        return
    try:
        current_app.extensions["celery"].control.revoke(job.task_id, terminate=True, signal="SIGUSR1")
    except Exception as exc:  # noqa: BLE001 - the broker may be down; the cooperative check still stops it
        log.warning("revoke failed job_id=%s task_id=%s error=%s", job.id, job.task_id, exc)


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
    step_outputs = dispatch.with_new_token({k: v for k, v in (job.step_outputs or {}).items() if k != "upload_tries"})
    step_outputs["tries_offset"] = job.attempt
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
