"""Per-step progress and stopping of a diffusers run at a step boundary.

``StepWatch`` is the pipeline's ``callback_on_step_end``: after each denoising
step it reports step i of n and, when the job was canceled or the attempt ran
out of time, sets diffusers' documented interrupt (``pipe._interrupt = True``),
so the loop stops before the next step.

A cancel is seen by the cooperative check (``ctx.check()``, fed by
``pipeline.worker.cancelwatch``) at the first step end after it. Celery's soft
time limit reaches a prefork pool process as SIGUSR1, which billiard turns into
``SoftTimeLimitExceeded`` raised wherever the process happens to be: in the
middle of a step, with the step's tensors still referenced by the traceback. ``deferred_soft_limit`` holds that
signal back while the pipeline runs (it only marks the watch), and the watch
stops the loop at the next step end; the signal's exception is raised once the
pipeline has returned, so ``run_step`` records it exactly as for every other
provider. A step that never ends is still ended by the hard time limit.
"""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager

from billiard.exceptions import SoftTimeLimitExceeded

from pipeline.adapters.providers.base import AttemptContext
from pipeline.core.errors import Canceled, Timeout


class StepWatch:
    """The ``callback_on_step_end`` of one run: progress per step, interrupt on cancel or time."""

    def __init__(self, ctx: AttemptContext):
        self.ctx = ctx
        self.done = 0
        self.total = 0
        self.signalled_at: int | None = None  # steps done when SIGUSR1 arrived
        self.stopped_by: BaseException | None = None
        self.callback_s = 0.0  # time spent in this callback: genline's share of the denoising loop

    def signalled(self) -> None:
        """SIGUSR1 arrived (Celery's soft time limit): stop at the next step end."""
        if self.signalled_at is None:
            self.signalled_at = self.done

    def __call__(self, pipe, step_index: int, timestep, callback_kwargs: dict) -> dict:
        entered = time.perf_counter()
        try:
            self._step_end(pipe, step_index)
        finally:
            self.callback_s += time.perf_counter() - entered
        return callback_kwargs

    def _step_end(self, pipe, step_index: int) -> None:
        self.done = step_index + 1
        # Every diffusers pipeline with this callback has num_timesteps; a custom one may not.
        self.total = getattr(pipe, "num_timesteps", None) or self.done
        if self.stopped_by is None:
            if self.signalled_at is not None:
                self.stopped_by = SoftTimeLimitExceeded()
            else:
                try:
                    self.ctx.check()
                except (Canceled, Timeout) as exc:
                    self.stopped_by = exc
        if self.stopped_by is not None:
            pipe._interrupt = True  # diffusers' documented way to stop the denoising loop
            return
        self.ctx.step(self.done, self.total)

    def raise_if_stopped(self, log, request, seconds: float) -> None:
        """After the pipeline returned: raise what stopped it, if anything did."""
        if self.stopped_by is None and self.signalled_at is not None:
            self.stopped_by = SoftTimeLimitExceeded()  # the signal came after the last step
        if self.stopped_by is None:
            log.info("diffusers run finished job_id=%s operation=%s steps=%d seconds=%.4f callback_s=%.4f",
                     self.ctx.job_id, request.operation, self.done, seconds, self.callback_s)
            return
        reason = "signal" if isinstance(self.stopped_by, SoftTimeLimitExceeded) else self.stopped_by.code
        log.info("diffusers run stopped job_id=%s reason=%s signalled_at_step=%s stopped_at_step=%d steps=%d "
                 "seconds=%.3f", self.ctx.job_id, reason, self.signalled_at, self.done, self.total, seconds)
        raise self.stopped_by


@contextmanager
def deferred_soft_limit(watch: StepWatch):
    """Turn SIGUSR1 into a mark on ``watch`` while the pipeline runs; the old handler comes back after.

    Only the main thread can set signal handlers (a prefork pool process runs its
    task there); elsewhere the signal is left alone and the cooperative check is all.
    """
    usr1 = getattr(signal, "SIGUSR1", None)
    if usr1 is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(usr1, lambda signum, frame: watch.signalled())
    try:
        yield
    finally:
        signal.signal(usr1, previous)
