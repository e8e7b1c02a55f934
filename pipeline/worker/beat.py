"""Beat's scheduler: celery-redbeat, whose schedule and lock live in Redis.

Any number of ``beat`` processes may run: the one holding the lock sends the
periodic tasks, the others wait on the lock and take over within
``lock_timeout + beat_max_loop_interval`` of its death. No local file is used.

redbeat's own scheduler stops the process when it loses the lock (a Redis
restarted without persistence forgets it) or cannot reach Redis for a tick. On
a platform one beat exiting may stop the whole formation (honcho does), and a
beat that stopped leaves no standby; so this one goes back to standing by
instead: it waits for the lock again and carries on once it holds it. Each
time it gets the lock it installs the schedule again, which an empty Redis
has lost (the times of the last runs are kept when Redis still has them).
"""
from __future__ import annotations

import logging
from types import SimpleNamespace

from redbeat import RedBeatScheduler
from redbeat.schedulers import acquire_distributed_beat_lock
from redis.exceptions import LockError, RedisError

log = logging.getLogger("genline.beat")


class Scheduler(RedBeatScheduler):
    """``redbeat.RedBeatScheduler`` that stands by again, rather than exit, when its lock is gone."""

    _installed_for = None
    """The lock the schedule was last installed under."""

    def tick(self, *args, **kwargs):
        if self.lock_key and self.lock is None:
            # The first acquire failed (Redis unreachable at start): wait for the lock now.
            return self._stand_by("no lock yet")
        try:
            if self.lock is not self._installed_for:
                # A standby may have waited through a Redis restart that lost the schedule.
                self.setup_schedule()
                self._installed_for = self.lock
            return super().tick(*args, **kwargs)
        except LockError as exc:
            # Another beat holds it now (this one stalled past the lock timeout, or
            # Redis restarted empty): nothing was sent in this tick, as the extend comes first.
            return self._stand_by(f"lock lost ({exc.__class__.__name__})")
        except RedisError as exc:
            log.warning("beat tick skipped error=%s", exc.__class__.__name__)
            return min(1.0, self.max_interval)

    def _stand_by(self, reason: str) -> float:
        log.warning("beat standing by reason=%s", reason)
        self.lock = None
        try:
            # Blocks, polling every max_interval, until this beat holds the lock.
            acquire_distributed_beat_lock(sender=SimpleNamespace(scheduler=self))
        except RedisError as exc:
            log.warning("beat lock not acquired error=%s", exc.__class__.__name__)
            return min(1.0, self.max_interval)
        return 0.0
