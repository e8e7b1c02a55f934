"""Per-step progress events written off the attempt's thread.

A model reports every denoising step (``AttemptContext.step``); written inline,
each event's round trips to Postgres and Redis held up the next step (about
2 ms a step, 17% of a small model's denoising loop on the CPU). The attempt
only queues the write; one thread per process and app writes them in order,
and the attempt waits for the queue to drain (``flush``) before its step's end
is recorded, so every progress event precedes the end, as before.

The hand-off is a ``queue.SimpleQueue`` (its ``put`` never blocks or takes a
lock the writer could hold while it waits for the GIL), and ``flush`` queues an
event that the writer sets once it reaches it.
"""
from __future__ import annotations

import logging
import os
import queue
import threading

log = logging.getLogger("genline.progress")


class Writer:
    """The write-behind thread of one app in one process (started on first use, again after a fork)."""

    def __init__(self, app):
        self.app = app
        self._start_lock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pid: int | None = None

    def put(self, write, *args) -> None:
        """Queue ``write(*args)``, to run in the app's context on the writer thread."""
        if self._pid != os.getpid():
            self._start()
        self._queue.put((write, args))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every write queued so far is done; False if ``timeout`` passed first."""
        if self._pid != os.getpid():
            return True  # nothing was queued in this process
        reached = threading.Event()
        self._queue.put((reached.set, ()))
        return reached.wait(timeout)

    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            # A forked child inherits the object but not the thread (nor what was queued for it).
            self._queue = queue.SimpleQueue()
            threading.Thread(target=self._run, args=(self._queue,), name="genline-progress", daemon=True).start()
            self._pid = os.getpid()

    def _run(self, work: queue.SimpleQueue) -> None:
        with self.app.app_context():
            while True:
                write, args = work.get()
                try:
                    write(*args)
                except Exception as exc:  # noqa: BLE001 - a lost progress event must not end the attempt
                    log.warning("progress write failed error=%s", exc)


def writer(app) -> Writer:
    """The writer of ``app`` in this process."""
    found = app.extensions.get("genline.progress")
    if found is None:
        found = app.extensions["genline.progress"] = Writer(app)
    return found
