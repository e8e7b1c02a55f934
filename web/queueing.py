"""Queue positions and start/finish estimates of jobs, for the API's representation.

The positions are the store's reads (``pipeline.store.queue``); the estimates
are ``pipeline.service.eta``'s.
"""
from __future__ import annotations

from pipeline.service import eta
from pipeline.store.models import utcnow
from pipeline.store.queue import queue_position, queue_positions, tenant_ahead, with_positions

__all__ = ["estimates", "queue_position", "queue_positions", "tenant_ahead", "with_positions"]


def estimates(jobs: list, positions: dict, cfg) -> dict:
    """``(estimated_start_at, estimated_finish_at)`` of each job by id (``pipeline.service.eta``);
    (None, None) unless queued."""
    cache: dict = {}
    now = utcnow()  # one instant for the whole list: estimates side by side differ by the queue alone
    return {job.id: eta.estimate(job, positions.get(job.id), cfg.tenant_concurrency,
                                 tenant_ahead=lambda job=job: tenant_ahead(job), now=now, cache=cache)
            for job in jobs}
