"""Writing an attempt's end past Celery's soft time limit.

In a prefork pool process Celery raises ``SoftTimeLimitExceeded`` from a signal
handler, in the process's main thread, wherever that thread is. An attempt that
ended by itself shortly before its limit (a provider error, or its own deadline
check, which uses the same timeout) is then writing its end when the limit
lands, and the exception abandons that end halfway: seen in a loaded run, where
it landed inside the statement recording a retry. The statement had committed,
the retry's message was never sent, and the job waited without a lease for the
reaper, its Celery task shown as crashed.

Python runs signal handlers only in the main thread (the ``signal`` module's
documented rule), so ``shielded`` hands the end to a thread of the pool process
and the main thread waits for it, letting a soft limit pass: the limit is for
the work, and the work is over. The hard limit still ends a write that hangs
(``pipeline.worker.hardlimit``). Elsewhere (the gevent I/O worker, whose pool
enforces only the hard limit; tests calling a step directly) ``fn`` runs in place.

The retry's message is still sent from the main thread (``Task.retry`` reads the
task's request, which is the main thread's), once the end is written: a limit
that lands in that send leaves the job to the reaper, as a refused send does.
"""
from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from billiard.exceptions import SoftTimeLimitExceeded

log = logging.getLogger("genline.softlimit")

T = TypeVar("T")


class _EndWriter:
    """The thread of one pool process that writes its attempts' ends, each in a fresh app context.

    Not the process's write-behind thread (``pipeline.worker.progress``): that one runs
    in one long-lived app context and holds the previous task's follow-ups, which an end
    would wait behind; an end gets its own context and session, as its task has.
    """

    def __init__(self, app):
        self.app = app
        self.work: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="genline-attempt-end", daemon=True).start()

    def _run(self) -> None:
        while True:
            fn, args, context, reply = self.work.get()
            try:
                reply.put((True, context.run(self._in_app, fn, args)))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, raised there
                reply.put((False, exc))

    def _in_app(self, fn, args):
        with self.app.app_context():  # its own, so its own database session
            return fn(*args)


_writer: dict[str, _EndWriter] = {}


def enable(app) -> None:
    """This process is a prefork pool child running ``app``'s tasks (``worker_process_init``,
    before any task): soft limits can land from now on, and ends go to a thread of its own."""
    _writer["current"] = _EndWriter(app)


def shielded(job_id: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, the end of an attempt of ``job_id``, run to its end even if the soft
    time limit lands meanwhile.

    ``fn`` runs in a fresh app context with the caller's context variables (log
    fields, trace); what it returns or raises comes back here. Only the few
    instructions before the hand-off remain where a limit can land.
    """
    writer = _writer.get("current")
    if writer is None or threading.current_thread() is not threading.main_thread():
        return fn(*args)  # no soft limit here, or it cannot land on this thread
    # The answer comes on a queue, not through Thread.join: a join that the limit's exception
    # interrupts marks the thread stopped while it still runs (CPython before 3.13); an
    # interrupted get is simply called again.
    reply: queue.SimpleQueue = queue.SimpleQueue()
    writer.work.put((fn, args, contextvars.copy_context(), reply))
    while True:
        try:
            ok, value = reply.get()
            break
        except SoftTimeLimitExceeded:
            log.info("soft time limit after the attempt ended, its end still written job_id=%s", job_id)
    if not ok:
        raise value
    return value
