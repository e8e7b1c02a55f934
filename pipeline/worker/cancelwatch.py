"""Noticing that a running attempt's job was canceled: one query per process, not one per job.

A provider calls ``ctx.check()`` between small steps of its work, and that
check asks whether the job is still ours. Asked per job every half second,
1,000 attempts waiting at once on one I/O worker would make 2,000 queries a
second. Instead each process has one watcher thread (a greenlet under gevent)
that looks up every watched job in a single ``SELECT`` every ``INTERVAL_S`` and
sets the ``stopped`` event of each job that is canceled, gone, or leased by
another owner. A waiting attempt holds no database connection; the watcher
holds one for a moment per pass.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import select

from pipeline.core.lifecycle import JobStatus
from pipeline.store.models import Job, db

log = logging.getLogger("genline.cancelwatch")

INTERVAL_S = 0.4
"""One pass this often: a cancel is noticed within about this long (plus the provider's own poll)."""
BATCH = 500
"""Job ids per SELECT (keeps the IN list short)."""


@dataclass(eq=False)
class Watched:
    job_id: str
    owner: str
    stopped: threading.Event = field(default_factory=threading.Event)


class CancelWatch:
    """The watcher of one app in one process (started on first use, again after a fork)."""

    def __init__(self, app):
        self.app = app
        self._watched: set[Watched] = set()
        self._lock = threading.Lock()
        self._pid: int | None = None

    def watch(self, job_id: str, owner: str) -> Watched:
        watched = Watched(job_id, owner)
        with self._lock:
            if self._pid != os.getpid():  # a forked child inherits the object, not the thread
                self._pid, self._watched = os.getpid(), set()
                threading.Thread(target=self._run, name="genline-cancelwatch", daemon=True).start()
            self._watched.add(watched)
        return watched

    def unwatch(self, watched: Watched) -> None:
        with self._lock:
            self._watched.discard(watched)

    def _pass(self) -> None:
        with self._lock:
            watched = list(self._watched)
        for start in range(0, len(watched), BATCH):
            chunk = watched[start:start + BATCH]
            rows = db.session.execute(
                select(Job.id, Job.status, Job.lease_owner).where(Job.id.in_({w.job_id for w in chunk}))
            ).all()
            db.session.rollback()  # end the read transaction: the connection goes back to the pool
            found = {r.id: r for r in rows}
            for w in chunk:
                row = found.get(w.job_id)
                # Not ours any more: canceled, or canceled and retried, or re-leased by the reaper.
                if row is None or row.status == JobStatus.CANCELED.value or row.lease_owner != w.owner:
                    w.stopped.set()

    def _run(self) -> None:
        with self.app.app_context():
            while True:
                time.sleep(INTERVAL_S)
                if not self._watched:
                    continue
                try:
                    self._pass()
                except Exception as exc:  # noqa: BLE001 - a DB blip: look again next pass
                    log.warning("cancel watch pass failed error=%s", exc)
                    try:
                        db.session.rollback()
                    except Exception:  # noqa: BLE001 - the connection is gone; the pool replaces it
                        pass


def watcher(app) -> CancelWatch:
    found = app.extensions.get("genline.cancelwatch")
    if found is None:
        found = app.extensions["genline.cancelwatch"] = CancelWatch(app)
    return found
