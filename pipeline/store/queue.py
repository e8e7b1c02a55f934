"""Queue position of a queued job: how many jobs will be started before it (``web.queueing`` adds the ETA).

Jobs start by priority, then by age (the time-ordered id): a queued job's
position is 1 + the queued jobs of a higher priority + the queued jobs of its
own priority with a smaller id. A held job (``pipeline.service.admission``: a replay
waiting for admission, or a start waiting for its tenant's throttle) comes
after every job of its priority that is not held, in the order of its
``admit_at``; the jobs not held do not count the held ones. The counts of one
job are built once, with bound parameters: building one cost more than running it.
A list's positions come with its rows (``with_positions``: the ranking, built once,
joined onto the list's own statement).
"""
from __future__ import annotations

from functools import lru_cache

from sqlalchemy import bindparam, case, func, select

from pipeline.core import priorities
from pipeline.core.lifecycle import JobStatus
from pipeline.store import autocommit
from pipeline.store.models import Job

_JOBS = Job.__table__
QUEUED = JobStatus.QUEUED.value


@lru_cache(maxsize=16)
def _count_ahead(priority: str, by_tenant: bool = False):
    """The count of the queued jobs that start before one of ``priority`` (bound: id).

    One statement per priority, with the priorities ahead written into it: an
    expanding IN list is rendered again at every execution, which made this
    count a seventh of a submission's CPU in the web (py-spy). ``by_tenant``:
    only one tenant's (bound: tenant), for the ETA under a concurrency cap.
    """
    own = (_JOBS.c.priority == priority) & (_JOBS.c.id < bindparam("id")) & _JOBS.c.held.is_(None)
    ahead = _ahead(priority)
    return select(func.count()).select_from(_JOBS).where(
        _JOBS.c.status == QUEUED, (autocommit.constant_in(_JOBS.c.priority, ahead) | own) if ahead else own,
        *_tenant_filter(by_tenant))


@lru_cache(maxsize=16)
def _count_ahead_held(priority: str, by_tenant: bool = False):
    """The count for a held job of ``priority`` (bound: id, admit_at)."""
    later = (_JOBS.c.admit_at < bindparam("admit_at", type_=_JOBS.c.admit_at.type)) | (
        (_JOBS.c.admit_at == bindparam("admit_at", type_=_JOBS.c.admit_at.type)) & (_JOBS.c.id < bindparam("id")))
    own = (_JOBS.c.priority == priority) & (_JOBS.c.held.is_(None) | (_JOBS.c.held.isnot(None) & later))
    ahead = _ahead(priority)
    return select(func.count()).select_from(_JOBS).where(
        _JOBS.c.status == QUEUED, (autocommit.constant_in(_JOBS.c.priority, ahead) | own) if ahead else own,
        *_tenant_filter(by_tenant))


def _tenant_filter(by_tenant: bool) -> tuple:
    return (_JOBS.c.tenant_id == bindparam("tenant"),) if by_tenant else ()


# A list's positions: number the queued jobs in starting order, joined onto the list's rows.
_RANKED = select(
    _JOBS.c.id,
    func.row_number().over(order_by=(case(priorities.RANK, value=_JOBS.c.priority),
                                     case((_JOBS.c.held.is_(None), 0), else_=1), _JOBS.c.admit_at,
                                     _JOBS.c.id)).label("position"),
).where(_JOBS.c.status == QUEUED, _JOBS.c.priority.in_(list(priorities.PRIORITIES))).subquery()


def with_positions(stmt):
    """``stmt``, a select of jobs, with each row's queue position beside it (None unless queued).

    Read in the rows' own statement, so a row and its position are one reading of
    the table: with the positions read after the rows, a job that started in between
    was counted alone and took a position another listed job also had.
    """
    return stmt.add_columns(_RANKED.c.position).outerjoin(_RANKED, _RANKED.c.id == _JOBS.c.id)


def _ahead(priority: str) -> list[str]:
    return priorities.ahead_of(priority)


def queue_position(job) -> int | None:
    """1 for the next job to start; None once a job is no longer queued."""
    if job.status != QUEUED:
        return None
    if getattr(job, "held", None):
        found = autocommit.rows(_count_ahead_held(job.priority), {"id": job.id, "admit_at": job.admit_at})
    else:
        found = autocommit.rows(_count_ahead(job.priority), {"id": job.id})
    return found[0][0] + 1


def tenant_ahead(job) -> int:
    """How many of the job's own tenant's queued jobs start before it (a queued job)."""
    params = {"id": job.id, "tenant": job.tenant_id}
    if getattr(job, "held", None):
        return autocommit.rows(_count_ahead_held(job.priority, True), params | {"admit_at": job.admit_at})[0][0]
    return autocommit.rows(_count_ahead(job.priority, True), params)[0][0]


def queue_positions(jobs: list) -> dict[str, int | None]:
    """``queue_position`` of each job by id (a list reads them with ``with_positions`` instead)."""
    return {job.id: queue_position(job) for job in jobs}
