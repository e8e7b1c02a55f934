"""pipeline.core.runstate: a job's control state, typed, in its step_outputs (no services)."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from pipeline.core.runstate import RunState


def test_the_state_reads_from_step_outputs_beside_the_steps_outputs():
    # Given a row's step_outputs with outputs of steps and control keys
    job = SimpleNamespace(step_outputs={"validate": {"ok": True}, "provider_index": 2, "tries_offset": 3,
                                        "upload_tries": 1, "dispatch": "abc"})
    # Then the control state is read, typed
    assert RunState.of(job) == RunState(provider_index=2, tries_offset=3, upload_tries=1, dispatch="abc")
    # And a new job (no control keys, or no step_outputs at all) has the defaults
    assert RunState.of(SimpleNamespace(step_outputs={})) == RunState()
    assert RunState.of(SimpleNamespace(step_outputs=None)) == RunState()


def test_writing_it_back_keeps_the_steps_outputs_and_leaves_defaults_out():
    outputs = {"generate": ["x"], "upload_tries": 2, "dispatch": "old"}
    # When a retry clears the upload tries and counts the attempts so far
    state = dataclasses.replace(RunState.from_outputs(outputs).with_new_token(), upload_tries=0, tries_offset=4)
    written = state.into(outputs)
    # Then the steps' outputs stay, the cleared key is gone, the new ones are set
    assert written["generate"] == ["x"] and "upload_tries" not in written and written["tries_offset"] == 4
    assert written["dispatch"] != "old" and len(written["dispatch"]) == 12
    # And the dict given is not changed
    assert outputs == {"generate": ["x"], "upload_tries": 2, "dispatch": "old"}


def test_the_state_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunState().tries_offset = 1  # type: ignore[misc]
