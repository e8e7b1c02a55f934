"""genline's Prometheus metrics, recorded where things happen, in every process.

Counters and histograms are counted by the process the event happens in: the web
process that accepted a job, the worker process (or prefork child) that ran a step,
called a provider, reaped or delivered a webhook. With ``PROMETHEUS_MULTIPROC_DIR``
set (prometheus_client's multiprocess mode, docs/observability.md) every process
writes its values to files there, and ``registry()`` sums them: gunicorn workers,
prefork children and processes that exited all count, and counters never go down.
Without it each process keeps its own values (enough for one process).

No label holds a tenant or job id: a label value per tenant makes one series per
tenant. ``GENLINE_METRICS_TENANT_LABELS=1`` adds ``tenant`` to the submitted and
finished counters, for deployments with few tenants.
"""
from __future__ import annotations

import logging
import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess

log = logging.getLogger("genline.metrics")

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
"""prometheus_client reads this variable once, at import; genline reads it at the same time."""
if MULTIPROCESS_DIR:
    os.makedirs(MULTIPROCESS_DIR, exist_ok=True)

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
"""Seconds: from a quick local step to a job near the longest deadline (GENLINE_MAX_DEADLINE_S)."""
STEPS = ("validate", "generate", "upload")
STATUSES = ("completed", "failed", "canceled")
REAPER_KINDS = ("lease_expired", "message_lost", "message_lost_in_transit", "deadline", "lost_limit")
"""What the reaper recovered: a lost worker's step sent again, a lost message sent again (its marker
gone; its marker left but its queues empty), a job failed at its deadline, a job failed after
GENLINE_MAX_LOST lost workers."""
WEBHOOK_OUTCOMES = ("delivered", "http_error", "network_error", "refused")
NO_ERROR = "none"
"""``error_code`` of a job that did not fail."""

_tenant_labels = False
_families: dict | None = None


def configure(tenant_labels: bool = False) -> None:
    """Set before the first value is recorded (``create_app`` does); later calls change nothing."""
    global _tenant_labels
    if _families is not None and tenant_labels != _tenant_labels:
        log.warning("metrics already set up tenant_labels=%s; GENLINE_METRICS_TENANT_LABELS applies at the "
                    "next start", _tenant_labels)
        return
    _tenant_labels = tenant_labels


def _build() -> dict:
    tenant = ("tenant",) if _tenant_labels else ()
    f = {
        "submitted": Counter("genline_jobs_submitted", "Jobs accepted by POST /v1/jobs (and the demo)",
                             ("operation", "priority", *tenant)),
        "finished": Counter("genline_jobs_finished", "Jobs that reached a terminal status (a retried job again)",
                            ("status", "error_code", *tenant)),
        "job_seconds": Histogram("genline_job_duration_seconds", "Seconds from submission to the terminal status",
                                 ("status", "operation"), buckets=BUCKETS),
        "queue_wait": Histogram("genline_queue_wait_seconds", "Seconds from submission to the first generate attempt",
                                ("priority", "provider"), buckets=BUCKETS),
        "attempts": Counter("genline_step_attempts", "Step attempts started (a claimed step message)", ("step",)),
        "step_seconds": Histogram("genline_step_duration_seconds", "Seconds of one step attempt, by how it ended",
                                  ("step", "outcome"), buckets=BUCKETS),
        "retries": Counter("genline_step_retries", "Failed step attempts sent again with backoff",
                           ("step", "error_code")),
        "failovers": Counter("genline_provider_failovers", "Jobs moved on from a provider to the next of their list",
                             ("provider", "error_code")),
        "provider_seconds": Histogram("genline_provider_call_duration_seconds", "Seconds of one provider call",
                                      ("provider", "operation", "outcome"), buckets=BUCKETS),
        "reaped": Counter("genline_reaper_recoveries", "Jobs the reaper recovered, by kind", ("kind",)),
        "webhooks": Counter("genline_webhook_deliveries", "Webhook delivery attempts, by outcome", ("outcome",)),
        "tasks": Counter("genline_tasks_started", "Celery tasks a worker started, by the queue they came from",
                         ("queue",)),
    }
    # Known label values start at 0, so rate() and alerts see a series before the first event.
    if not _tenant_labels:
        f["finished"].labels("completed", NO_ERROR)
    for step in STEPS:
        f["attempts"].labels(step)
    for kind in REAPER_KINDS:
        f["reaped"].labels(kind)
    for outcome in WEBHOOK_OUTCOMES:
        f["webhooks"].labels(outcome)
    return f


def _m() -> dict:
    global _families
    if _families is None:
        _families = _build()
    return _families


def _tenant(tenant_id: str | None) -> tuple:
    return (tenant_id or "",) if _tenant_labels else ()


def job_submitted(operation: str, priority: str, tenant_id: str | None = None) -> None:
    _m()["submitted"].labels(operation, priority, *_tenant(tenant_id)).inc()


def job_finished(status: str, error_code: str | None, operation: str, seconds: float | None,
                 tenant_id: str | None = None) -> None:
    """A job reached ``status`` (completed, failed, canceled) ``seconds`` after it was submitted."""
    m = _m()
    m["finished"].labels(status, error_code or NO_ERROR, *_tenant(tenant_id)).inc()
    if seconds is not None:
        m["job_seconds"].labels(status, operation).observe(max(0.0, seconds))


def job_started(priority: str, provider: str | None, waited_s: float | None) -> None:
    """A job's first generate attempt began, ``waited_s`` after submission."""
    if waited_s is not None:
        _m()["queue_wait"].labels(priority, provider or "").observe(max(0.0, waited_s))


def step_attempt(step: str) -> None:
    _m()["attempts"].labels(step).inc()


def step_ended(step: str, outcome: str, seconds: float) -> None:
    """An attempt of ``step`` ended: ``ok``, ``error`` or ``canceled``."""
    _m()["step_seconds"].labels(step, outcome).observe(max(0.0, seconds))


def step_retried(step: str, error_code: str) -> None:
    _m()["retries"].labels(step, error_code).inc()


def provider_failover(provider: str, error_code: str) -> None:
    _m()["failovers"].labels(provider, error_code).inc()


def provider_call(provider: str, operation: str, outcome: str, seconds: float) -> None:
    """One call of a provider: ``ok``, the error code it raised, or ``interrupted``."""
    _m()["provider_seconds"].labels(provider, operation, outcome).observe(max(0.0, seconds))


def reaper_recovered(kind: str, count: int = 1) -> None:
    if count:
        _m()["reaped"].labels(kind).inc(count)


def webhook_delivery(outcome: str) -> None:
    _m()["webhooks"].labels(outcome).inc()


def task_started(queue: str | None) -> None:
    _m()["tasks"].labels(queue or "unknown").inc()


def process_dead(pid: int) -> None:
    """A process of the multiprocess group exited (gunicorn's child_exit, a prefork child's shutdown)."""
    if MULTIPROCESS_DIR:
        multiprocess.mark_process_dead(pid, MULTIPROCESS_DIR)


class _Own:
    """This process's own values (no multiprocess directory)."""

    def collect(self):
        return REGISTRY.collect()


class _Shared:
    """genline's values of every process in the multiprocess directory.

    Only ``genline_*`` families: another program using prometheus_client that
    was started with the same directory (Flower, under honcho's one environment)
    writes its own there, and they belong to its own scrape.
    """

    def __init__(self, path: str):
        self.files = multiprocess.MultiProcessCollector(None, path=path)

    def collect(self):
        return (family for family in self.files.collect() if family.name.startswith("genline_"))


def registry(*extra) -> CollectorRegistry:
    """A registry for one scrape: every process's values (or this one's), and ``extra`` collectors."""
    _m()
    found = CollectorRegistry(auto_describe=False)
    found.register(_Shared(MULTIPROCESS_DIR) if MULTIPROCESS_DIR else _Own())
    for collector in extra:
        found.register(collector)
    return found
