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

from pipeline.adapters import dispatch
from pipeline.core import budget
from pipeline.core.errors import DeadlineExceeded, GenlineError
from pipeline.core.lifecycle import Step
from pipeline.store import jobs
from pipeline.store.models import Job, utcnow

log = logging.getLogger("genline.failover")


def current_index(job) -> int:
    """Position of the provider whose turn it is in ``job.providers``."""
    index = (job.step_outputs or {}).get("provider_index")
    if isinstance(index, int):
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


def take_over(job, owner: str, error: GenlineError, tries: int, elapsed_ms: int) -> bool:
    """Handle a failed generate attempt when failover decides it; False leaves it to the usual retry.

    Switches to the next provider (a ``retry`` event naming it, the next attempt
    sent at once), or fails the job when the provider cannot be used and none
    is left, or when no time is left before the deadline.
    """
    from pipeline.worker.steps import fail

    following = next_provider(job, error, tries)
    if following is None:
        if error.retryable and getattr(error, "exhausts_provider", False):
            return fail(job, Step.GENERATE, error, where=(Job.lease_owner == owner,)) or True
        return False
    if not budget.fits_before_deadline(0.0, job.deadline_at, utcnow()):
        late = DeadlineExceeded(f"no time left to try provider {following!r} before the deadline "
                                f"({error.code}: {error.message})")
        return fail(job, Step.GENERATE, late, where=(Job.lease_owner == owner,)) or True
    step_outputs = dispatch.with_new_token(job.step_outputs)
    step_outputs.update(provider_index=current_index(job) + 1, tries_offset=job.attempt - job.lost_count)
    switched = jobs.record(
        job.id, "retry", {"step": Step.GENERATE.value, "attempt": job.attempt, "elapsed_ms": elapsed_ms,
                          "error": error.as_dict(Step.GENERATE.value), "delay_s": 0.0,
                          "provider": following, "previous_provider": job.provider},
        where=(Job.lease_owner == owner,), lease_owner=None, lease_until=None,
        provider=following, model=None, step_outputs=step_outputs,
    )
    if switched:
        job.step_outputs = step_outputs
        log.info("provider failover job_id=%s step=generate attempt=%s from=%s to=%s error=%s",
                 job.id, job.attempt, job.provider, following, error.code)
        job.provider = following  # the message goes to the queue of the new provider's kind
        dispatch.send_step(job, Step.GENERATE)
    return True
