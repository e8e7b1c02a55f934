"""Provider failover within one job (DESIGN §5).

A job names its providers in order (``job.providers``); ``job.provider`` is the
one whose turn it is. Each provider gets up to ``max_attempts`` attempts for
retryable failures. When its attempts are used up, or it fails in a way that
retrying cannot fix (bad credentials, not configured: ``exhausts_provider``),
or it asks to wait (Retry-After) past the deadline, the next provider is tried
at once, under the same deadline. A failure that is
not retryable (invalid_input, unsafe_content) ends the job: another provider
would refuse the same request.

The requested ``model`` names a model of the first provider; providers tried
after it run their own default model. The job row records which provider and
model produced the outputs once generate succeeds.
"""
from __future__ import annotations

import logging
from dataclasses import replace

from pipeline.adapters import metrics
from pipeline.core import budget
from pipeline.core.errors import DeadlineExceeded, GenlineError
from pipeline.core.lifecycle import Step
from pipeline.core.runstate import RunState
from pipeline.store import jobs
from pipeline.store.models import utcnow
from pipeline.worker import taskstate
from pipeline.worker.failing import fail

log = logging.getLogger("genline.failover")


def current_index(job) -> int:
    """Position of the provider whose turn it is in ``job.providers``."""
    index = RunState.of(job).provider_index
    if index is not None:
        return index
    providers = list(job.providers or [])
    return providers.index(job.provider) if job.provider in providers else 0


def next_provider(job, error: GenlineError, tries: int) -> str | None:
    """The provider to try next when ``error`` ends the current one's turn; None to go on as usual."""
    if not error.retryable:
        return None
    # A Retry-After that would run past the deadline ends this provider's turn too.
    waits_too_long = bool(error.retry_after) and not budget.fits_before_deadline(
        error.retry_after, job.deadline_at, utcnow())
    if tries < job.max_attempts and not getattr(error, "exhausts_provider", False) and not waits_too_long:
        return None
    providers = list(job.providers or [])
    index = current_index(job) + 1
    return providers[index] if index < len(providers) else None


NOT_TAKEN = object()
"""``take_over``'s answer when failover does not decide: the usual retry rules apply."""


def take_over(job, owner: str, error: GenlineError, tries: int, elapsed_ms: int):
    """Handle a failed generate attempt when failover decides it; ``NOT_TAKEN`` leaves it to the usual retry.

    Switches to the next provider (a ``retry`` event naming it; the returned
    ``taskstate.retrying`` asks for the next attempt at once, on the new
    provider's queue: it carries the row as written), or fails the job when the
    provider cannot be used and none is left, or when no time is left before
    the deadline (``taskstate.failed``). None: the attempt's lease was lost.
    """
    following = next_provider(job, error, tries)
    if following is None:
        if error.retryable and getattr(error, "exhausts_provider", False):
            return taskstate.failed(error) if fail(job, Step.GENERATE, error, owner=owner) else None
        return NOT_TAKEN
    if not budget.fits_before_deadline(0.0, job.deadline_at, utcnow()):
        late = DeadlineExceeded(f"no time left to try provider {following!r} before the deadline "
                                f"({error.code}: {error.message})")
        return taskstate.failed(late) if fail(job, Step.GENERATE, late, owner=owner) else None
    index = current_index(job) + 1
    state = replace(RunState.of(job).with_new_token(), provider_index=index,
                    tries_offset=job.attempt - job.lost_count)
    switched = jobs.record(
        job.id, "retry", {"step": Step.GENERATE.value, "attempt": job.attempt, "elapsed_ms": elapsed_ms,
                          "error": error.as_dict(Step.GENERATE.value), "delay_s": 0.0,
                          "provider": following, "previous_provider": job.provider},
        owner=owner, lease_owner=None, lease_until=None,
        provider=following, model=None, step_outputs=state.into(job.step_outputs),
    )
    if not switched:
        return None
    log.info("provider failover job_id=%s step=generate attempt=%s from=%s to=%s error=%s",
             job.id, job.attempt, job.provider, following, error.code)
    metrics.provider_failover(job.provider, error.code)
    # The attempts the budget still allows: a full turn for each provider from this one on.
    # The row as written goes with it: the message goes to the queue of the new provider's kind.
    return taskstate.retrying(error, 0.0, (len(job.providers or []) - index) * job.max_attempts, job=switched.job)
