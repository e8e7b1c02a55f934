"""Queue position of a queued job: how many jobs will be started before it."""
from __future__ import annotations

from sqlalchemy import func, select

from pipeline.models import Job, db

PRIORITY_ORDER = {"high": 0, "normal": 1, "low": 2}


def queue_position(job) -> int | None:
    """1 for the next job to start; None once a job is no longer queued."""
    if job.status != "queued":
        return None
    ahead = [p for p, rank in PRIORITY_ORDER.items() if rank < PRIORITY_ORDER.get(job.priority, 1)]
    count = db.session.execute(
        select(func.count()).select_from(Job).where(
            Job.status == "queued",
            (Job.priority.in_(ahead)) | ((Job.priority == job.priority) & (Job.id < job.id)),
        )
    ).scalar_one()
    db.session.rollback()
    return count + 1
