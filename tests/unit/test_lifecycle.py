"""The lifecycle table (pipeline.core.lifecycle): the legal moves, terminal statuses and
the step order. The job store's compare-and-set over it is in tests/test_lifecycle.py."""
from __future__ import annotations

import pytest

from pipeline.core.lifecycle import (
    EVENT_FOR,
    TERMINAL,
    TERMINAL_EVENTS,
    JobStatus,
    Step,
    can_transition,
    is_terminal,
    next_step,
    sources,
)

S = JobStatus


def test_the_legal_moves_are_exactly_those_of_the_design():
    legal = {(a, b) for a in S for b in S if can_transition(a, b)}
    assert legal == {
        (S.QUEUED, S.PROCESSING), (S.QUEUED, S.CANCELED), (S.QUEUED, S.FAILED),
        (S.PROCESSING, S.COMPLETED), (S.PROCESSING, S.FAILED), (S.PROCESSING, S.CANCELED),
        (S.FAILED, S.QUEUED), (S.CANCELED, S.QUEUED),
    }
    assert sources(S.COMPLETED) == {S.PROCESSING}
    assert all(is_terminal(s) for s in (S.COMPLETED, S.FAILED, S.CANCELED))
    assert [next_step(s) for s in Step] == [Step.GENERATE, Step.UPLOAD, Step.NOTIFY, None]


def test_statuses_and_steps_are_taken_as_plain_strings_too():
    assert can_transition("queued", "processing") and not can_transition("completed", "queued")
    assert sources("queued") == {S.FAILED, S.CANCELED}
    assert next_step("validate") is Step.GENERATE
    assert str(S.QUEUED) == "queued" and str(Step.UPLOAD) == "upload"


def test_an_unknown_status_or_step_is_refused_not_guessed():
    with pytest.raises(ValueError):
        can_transition("queued", "done")
    with pytest.raises(ValueError):
        next_step("render")


def test_completed_is_final_and_every_terminal_status_has_its_terminal_event():
    assert sources(S.PROCESSING) == {S.QUEUED} and not any(can_transition(S.COMPLETED, s) for s in S)
    assert not is_terminal(S.QUEUED) and not is_terminal(S.PROCESSING)
    assert {EVENT_FOR[s] for s in TERMINAL} == TERMINAL_EVENTS
