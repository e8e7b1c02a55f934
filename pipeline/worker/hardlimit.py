"""Recording a hard time limit as a ``timeout`` attempt.

A provider call that ignores the soft time limit (``SoftTimeLimitExceeded`` is
swallowed, or the call is stuck in C code) is ended by billiard killing the pool
process at the hard limit. Nothing runs in that process afterwards; Celery calls
``Request.on_timeout(soft=False, ...)`` for it in the worker's main process
(Celery's "custom request classes"). The main process only supervises: it does
not touch the database. It sends ``genline.hard_timeout`` (job id, the killed
task's id, seconds) to the ``io.finish`` queue, and whichever worker takes it
records the ``timeout`` attempt like a soft timeout (retried within budget).
Without this the lease would expire and the reaper would count a lost worker
instead of a timed-out attempt; that is also what happens if the message
cannot be sent.
"""
from __future__ import annotations

import logging
import time

from celery import shared_task
from celery.worker.request import Request

from pipeline.adapters import routing
from pipeline.worker import steps

log = logging.getLogger("genline.hardlimit")

TASK = "genline.hard_timeout"


class StepRequest(Request):
    """The request class of genline's step tasks (set as ``Task.Request``)."""

    def on_timeout(self, soft, timeout):
        super().on_timeout(soft, timeout)
        if soft or not self.args:
            return
        seconds = time.time() - (self.time_start or time.time())
        try:
            self.task.app.send_task(TASK, args=[self.args[0], self.id, seconds], queue=routing.FINISH)
        except Exception:  # noqa: BLE001 - the main process must survive; the lease then expires and the reaper acts
            log.exception("hard time limit not handed on job_id=%s task_id=%s", self.args[0], self.id)


@shared_task(name=TASK)
def hard_timeout(job_id: str, owner: str, seconds: float) -> None:
    """Record the attempt ``owner`` of ``job_id`` that the pool killed after ``seconds`` as a ``timeout``."""
    steps.hard_timeout(job_id, owner, seconds)
