"""The one table each of priorities, image formats and statuses, and what is derived from them. No services."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.adapters import routing
from pipeline.adapters.storage import output_key
from pipeline.core import media, priorities
from pipeline.core.lifecycle import STATUSES, TERMINAL_STATUSES, JobStatus, is_terminal
from web.responses import Job as JobOut
from web.schemas import JobCreate


def test_priorities_are_served_high_then_normal_then_low():
    assert priorities.PRIORITIES == ("high", "normal", "low")
    assert [priorities.ahead_of(p) for p in priorities.PRIORITIES] == [[], ["high"], ["high", "normal"]]
    # An unknown priority is served as the default one
    assert priorities.known("urgent") == "normal" and priorities.ahead_of(None) == ["high"]


def test_every_priority_has_a_queue_of_each_kind_and_the_api_takes_exactly_the_table():
    queues = {routing.step_queue("generate", p, "openai") for p in priorities.PRIORITIES}
    assert queues == {"io.high", "io.normal", "io.low"}
    for p in priorities.PRIORITIES:
        assert JobCreate.model_validate({"prompt": "x", "priority": p}).priority == p
    with pytest.raises(ValidationError):
        JobCreate.model_validate({"prompt": "x", "priority": "urgent"})


@pytest.mark.parametrize("name", list(media.FORMATS))
def test_each_output_format_is_stored_under_an_extension_that_maps_back_to_its_media_type(name):
    pil, media_type = media.pil_and_media_type(name)
    key = output_key("job_x", 0, media_type)
    assert media.BY_EXTENSION[key.rsplit(".", 1)[-1]] == media_type
    assert media.BY_PIL[pil] == media_type
    assert JobCreate.model_validate({"prompt": "x", "params": {"format": name}}).params.format == name


def test_a_multi_picture_jpeg_is_read_as_jpeg_and_unknown_media_types_get_no_extension():
    assert media.BY_PIL["MPO"] == "image/jpeg"
    assert output_key("job_x", 0, "image/gif").endswith(".bin")


def test_statuses_come_from_the_lifecycle_enum_and_the_response_schema_lists_them():
    assert STATUSES == tuple(s.value for s in JobStatus)
    assert TERMINAL_STATUSES == ("completed", "failed", "canceled")
    assert all(is_terminal(s) for s in TERMINAL_STATUSES)
    schema = JobOut.model_json_schema()
    assert tuple(schema["properties"]["status"]["enum"]) == STATUSES
