"""The provider interface: what ``generate`` hands a provider and gets back."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from pipeline.core.errors import Canceled, Timeout


@dataclass
class ProviderRequest:
    """One attempt's work: the operation, its prompt and params, decoded inputs."""

    operation: str
    prompt: str
    params: dict
    model: str | None = None
    images: list[Image.Image] = field(default_factory=list)
    mask: Image.Image | None = None
    input_urls: list[str] = field(default_factory=list)
    mask_url: str | None = None  # remote providers fetch inputs by (signed, expiring) URL


@dataclass
class GeneratedImage:
    """Encoded image bytes as the provider returned them."""

    data: bytes
    media_type: str
    model: str | None = None


class AttemptContext:
    """What a provider may ask of the running attempt: time left, progress, cancel.

    ``check()`` raises ``Canceled`` once the job is canceled (or the attempt lost
    its lease) and ``Timeout`` once the attempt's time is up; providers call it
    between small steps of their work.
    """

    def __init__(self, *, job_id: str, attempt: int, deadline: float,
                 is_canceled: Callable[[], bool] = lambda: False,
                 on_progress: Callable[[float, str], None] = lambda f, m: None,
                 check_every_s: float = 0.5,
                 on_step: Callable[[int, int], None] | None = None):
        self.job_id = job_id
        self.attempt = attempt
        self.deadline = deadline  # time.monotonic() value
        self._is_canceled = is_canceled
        self._on_progress = on_progress
        self._check_every_s = check_every_s
        self._on_step = on_step
        # The attempt starts right after its claim, which found the job active:
        # the first look at the database can wait one interval.
        self._next_check = time.monotonic() + check_every_s

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def check(self) -> None:
        now = time.monotonic()
        if now >= self.deadline:
            raise Timeout("the attempt ran out of time")
        if now >= self._next_check:
            self._next_check = now + self._check_every_s
            if self._is_canceled():
                raise Canceled("the job was canceled")

    def progress(self, fraction: float, message: str = "") -> None:
        self._on_progress(max(0.0, min(1.0, fraction)), message)

    def step(self, done: int, total: int) -> None:
        """Step ``done`` of ``total`` finished: one progress event for each (a model's denoising steps).

        Unlike ``progress`` it is never thinned out, so a client sees every step.
        """
        if self._on_step is not None:
            self._on_step(done, total)
        else:
            self.progress(done / total, f"step {done} of {total}")

    def sleep(self, seconds: float, step: float = 0.05) -> None:
        """Sleep in small steps, checking cancel and time between them."""
        end = time.monotonic() + seconds
        while True:
            self.check()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(step, left))


class Provider(Protocol):
    name: str
    runs_in_worker: bool
    """True when the work is done inside the worker process (CPU/GPU): its generate
    runs on the compute kind (prefork, Celery time limits); False for a provider
    that waits on a remote service through ``httpcall``: the I/O kind. See pipeline.adapters.routing."""

    def run(self, request: ProviderRequest, ctx: AttemptContext) -> list[GeneratedImage]:
        """Do the work of one attempt; raise a ``GenlineError`` subclass on failure."""
