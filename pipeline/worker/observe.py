"""Worker and beat observability, wired through Celery's signals.

- JSON log lines (``GENLINE_LOG_FORMAT=json``): Celery's own handlers, set up
  after genline's, are switched to ``pipeline.adapters.logs.JsonFormatter``.
- ``genline_tasks_started_total{queue}``: counted as each task starts, so an
  alert can tell a queue with messages that no worker takes from.
- A prefork child that exits is marked dead in the multiprocess directory.
- ``GENLINE_WORKER_METRICS_PORT``: the worker's main process serves the metrics
  of every process on its host (the multiprocess directory) on that port, for a
  worker on a host without a web process (docs/observability.md).
"""
from __future__ import annotations

import errno
import logging
import os

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
)
from celery.utils.log import get_multiprocessing_logger
from prometheus_client import start_http_server

from pipeline.adapters import logs, metrics

log = logging.getLogger("genline.worker")


def install(cfg) -> None:
    """Connect the handlers once per process (``create_app`` may run more than once)."""
    def _json_logs(logger=None, **_):
        if logger is not None:
            logs.reformat(logger, cfg.log_format)
            # Celery gives billiard's pool logger ("a pool process exited") a handler of
            # its own, set up beside the root logger's; the signal names only the root.
            logs.reformat(get_multiprocessing_logger(), cfg.log_format)
        if cfg.log_format == "json":
            logging.captureWarnings(True)

    def _serve(**_):
        if cfg.worker_metrics_port:
            serve_metrics(cfg.worker_metrics_port)

    after_setup_logger.connect(_json_logs, weak=False, dispatch_uid="genline.logs.setup")
    after_setup_task_logger.connect(_json_logs, weak=False, dispatch_uid="genline.logs.task")
    task_prerun.connect(_task_started, weak=False, dispatch_uid="genline.metrics.task_prerun")
    task_postrun.connect(_task_ended, weak=False, dispatch_uid="genline.logs.task_postrun")
    worker_process_shutdown.connect(_process_exit, weak=False, dispatch_uid="genline.metrics.child_exit")
    worker_init.connect(_serve, weak=False, dispatch_uid="genline.metrics.serve")


def _task_started(task=None, **_):
    logs.clear()  # a line of this task names no job until its step binds one (pipeline.worker.steps)
    info = getattr(getattr(task, "request", None), "delivery_info", None) or {}
    metrics.task_started(info.get("routing_key"))


def _task_ended(**_):
    logs.clear()


def _process_exit(pid=None, **_):
    metrics.process_dead(pid or os.getpid())


def serve_metrics(port: int, addr: str = "0.0.0.0") -> bool:
    """Serve ``metrics.registry()`` over HTTP on ``port``; False when another process here already does.

    Workers on one host share the multiprocess directory, so one server shows
    them all: a second worker finding the port taken logs it and goes on.
    """
    if not metrics.MULTIPROCESS_DIR:
        log.warning("worker metrics without PROMETHEUS_MULTIPROC_DIR show this process only, not its "
                    "prefork children port=%s", port)
    try:
        start_http_server(port, addr=addr, registry=metrics.registry())
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        log.info("worker metrics port in use port=%s: another worker on this host serves them", port)
        return False
    log.info("worker metrics serving port=%s multiprocess_dir=%s", port, metrics.MULTIPROCESS_DIR)
    return True
