"""Recording a hard time limit as a ``timeout`` attempt.

A provider call that ignores the soft time limit (``SoftTimeLimitExceeded`` is
swallowed, or the call is stuck in C code) is ended by billiard killing the pool
process at the hard limit. Nothing runs in that process afterwards, so the
attempt is recorded from the worker's main process, where Celery calls
``Request.on_timeout(soft=False, ...)`` for it (Celery's "custom request
classes"). Without this the lease would expire and the reaper would count a lost
worker instead of a timed-out attempt.
"""
from __future__ import annotations

import logging
import time

from celery.worker.request import Request

log = logging.getLogger("genline.hardlimit")


class StepRequest(Request):
    """The request class of genline's step tasks (set as ``Task.Request``)."""

    def on_timeout(self, soft, timeout):
        super().on_timeout(soft, timeout)
        if soft or not self.args:
            return
        started = self.time_start or time.time()
        try:
            # The worker runs ``-A pipeline.worker``: this import is the app it already built.
            from pipeline.worker.celery import flask_app
            with flask_app.app_context():
                from pipeline.worker.steps import hard_timeout
                hard_timeout(self.args[0], self.id, time.time() - started)
        except Exception:  # noqa: BLE001 - the main process must survive; the lease then expires and the reaper acts
            log.exception("hard time limit not recorded task_id=%s", self.id)
