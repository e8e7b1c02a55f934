"""Per-tenant concurrency slots in SQL: the parts of a generate claim that count them.

The policy (parking, waking) is ``pipeline.service.concurrency``; the claim
statement that takes a slot is the job store's (``pipeline.store.jobs.claim``).
"""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from pipeline.core.lifecycle import JobStatus, Step
from pipeline.store.models import ApiKey, Job, Tenant


def limit_of(tenant_column, default: int):
    """SQL for a tenant's limit: its own, else its keys' largest, else ``default``."""
    own = select(Tenant.concurrency).where(Tenant.id == tenant_column).scalar_subquery()
    keys = (select(func.max(ApiKey.concurrency))
            .where(ApiKey.tenant_id == tenant_column, ApiKey.revoked_at.is_(None)).scalar_subquery())
    return func.coalesce(own, keys, default)


def running_of(tenant_column):
    """SQL counting a tenant's jobs that hold a generate slot."""
    other = aliased(Job)
    return (select(func.count()).select_from(other)
            .where(other.tenant_id == tenant_column, other.status == JobStatus.PROCESSING.value,
                   other.step == Step.GENERATE.value)
            .scalar_subquery())


def claim_condition(default: int):
    """WHERE clause of a generate claim: the job holds a slot already, or one is free.

    Built once into the cached claim statement (``pipeline.store.jobs``), per default limit.
    """
    return (Job.status == JobStatus.PROCESSING.value) | (
        running_of(Job.tenant_id) < limit_of(Job.tenant_id, default))


CLAIM_LOCK = ("SELECT pg_advisory_xact_lock(hashtext('genline:tenant:' || "
              "(SELECT tenant_id FROM jobs WHERE id = %(job_id)s)))")
"""Postgres: SQL run before a generate claim, in its transaction, holding the job's
tenant's claim lock until it ends (``jobs.claim`` sends it as the claim's prefix)."""
