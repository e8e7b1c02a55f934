"""Lease renewal for the steps a worker process runs: one thread per process and app.

A step's lease is renewed every ``lease_s / 3`` while it runs, so that a
worker that dies loses it quickly and a live one never does. One renewal
thread serves every step its process runs (one at a time under prefork,
hundreds under the I/O worker's gevent pool) and renews those due in one
statement. A thread started and stopped per step cost about 0.3 ms of every
step and woke up to exit just as the step wrote its end.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.store import jobs

log = logging.getLogger("genline.leases")


@dataclass(eq=False)
class Held:
    """One running step's lease; ``lost`` is set once renewal finds it gone."""

    job_id: str
    owner: str
    lease_s: float
    due: float
    lost: threading.Event = field(default_factory=threading.Event)


class Renewer:
    """The renewal thread of one app in one process (started on first use, again after a fork).

    ``clock`` (seconds, monotonic) decides when a lease is due; a test passes one it moves
    itself, then calls ``wake`` instead of waiting for a renewal period to pass.
    """

    def __init__(self, app, clock: Callable[[], float] = time.monotonic):
        self.app = app
        self.clock = clock
        self._held: set[Held] = set()
        self._cond = threading.Condition()
        self._pid: int | None = None
        self._wake_at = 0.0  # when the waiting thread wakes next; 0 while it is not waiting

    def hold(self, job_id: str, owner: str, lease_s: float) -> Held:
        held = Held(job_id, owner, lease_s, self.clock() + lease_s / 3)
        with self._cond:
            if self._pid != os.getpid():
                # A forked child inherits the object but not the thread.
                self._pid, self._held, self._wake_at = os.getpid(), set(), 0.0
                threading.Thread(target=self._run, name="genline-leases", daemon=True).start()
            self._held.add(held)
            # Wake the thread only for a lease due before it wakes anyway: with
            # one lease length, steps that follow each other never do (a wake-up
            # per step cost a thread switch on every step).
            if held.due < self._wake_at:
                self._cond.notify()
        return held

    def release(self, held: Held) -> None:
        with self._cond:
            self._held.discard(held)

    def wake(self) -> None:
        """Look at the leases again now (the clock has moved) rather than at the next planned wake-up."""
        with self._cond:
            self._cond.notify()

    def _due(self) -> list[Held]:
        """Wait until a lease is due for renewal; those that are (marked as renewed now)."""
        with self._cond:
            while True:
                now = self.clock()
                if any(h.due <= now for h in self._held):
                    # Those due within half a period come along: one statement renews
                    # them all, and from then on they fall due together.
                    due = [h for h in self._held if h.due <= now + h.lease_s / 6]
                    for held in due:
                        held.due = now + held.lease_s / 3
                    self._wake_at = 0.0
                    return due
                nearest = min((h.due for h in self._held), default=now + 60)
                self._wake_at = nearest
                self._cond.wait(nearest - now)

    def _run(self) -> None:
        with self.app.app_context():
            while True:
                due = self._due()
                for lease_s in {held.lease_s for held in due}:
                    self._renew([held for held in due if held.lease_s == lease_s], lease_s)

    def _renew(self, due: list[Held], lease_s: float) -> None:
        """Renew ``due`` in one statement; a lease no longer held is marked lost and released."""
        try:
            renewed = jobs.renew([(held.job_id, held.owner) for held in due], lease_s)
        except Exception as exc:  # noqa: BLE001 - a DB blip: try again next tick
            log.warning("lease renewal failed leases=%d error=%s", len(due), exc)
            return
        for held in due:
            if held.job_id not in renewed:
                held.lost.set()
                self.release(held)


def renewer(app) -> Renewer:
    found = app.extensions.get("genline.leases")
    if found is None:
        found = app.extensions["genline.leases"] = Renewer(app)
    return found
