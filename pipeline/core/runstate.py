"""A job's control state: what the pipeline keeps to run it, beside the steps' outputs.

Stored in the job row's ``step_outputs`` JSON under reserved keys, next to
each step's output (``step_outputs["validate"]`` …), so rows written before
this type existed read the same. ``RunState.of`` reads it from a row, a
snapshot or anything with a ``step_outputs`` dict; ``into`` writes it back into
a copy of that dict. Pure: no I/O.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

PROVIDER_INDEX = "provider_index"
TRIES_OFFSET = "tries_offset"
UPLOAD_TRIES = "upload_tries"
DISPATCH = "dispatch"


@dataclass(frozen=True)
class RunState:
    """Control state of one job (all optional: a new job has none)."""

    provider_index: int | None = None
    """Position in ``job.providers`` of the provider whose turn it is (``pipeline.worker.failover``);
    None: the position of ``job.provider``."""
    tries_offset: int = 0
    """Generate attempts made before the current provider's turn or a retry: they do not count."""
    upload_tries: int = 0
    """Failed attempts of the upload step so far."""
    dispatch: str | None = None
    """Token of the step message the row waits for (``pipeline.adapters.dispatch``)."""

    @classmethod
    def of(cls, job: Any) -> RunState:
        """The state held by ``job.step_outputs`` (defaults for missing or malformed keys)."""
        return cls.from_outputs(getattr(job, "step_outputs", None))

    @classmethod
    def from_outputs(cls, step_outputs: dict | None) -> RunState:
        """The state held by a ``step_outputs`` dict."""
        outputs = step_outputs or {}
        index = outputs.get(PROVIDER_INDEX)
        token = outputs.get(DISPATCH)
        return cls(provider_index=index if isinstance(index, int) else None,
                   tries_offset=int(outputs.get(TRIES_OFFSET, 0) or 0),
                   upload_tries=int(outputs.get(UPLOAD_TRIES, 0) or 0),
                   dispatch=token if isinstance(token, str) else None)

    def into(self, step_outputs: dict | None) -> dict:
        """A copy of ``step_outputs`` holding this state; keys at their default are left out."""
        outputs = dict(step_outputs or {})
        for field in fields(self):
            value = getattr(self, field.name)
            if value == field.default:
                outputs.pop(field.name, None)
            else:
                outputs[field.name] = value
        return outputs

    def with_new_token(self) -> RunState:
        """This state with a fresh dispatch token (a move that sends a new message)."""
        return replace(self, dispatch=os.urandom(6).hex())
