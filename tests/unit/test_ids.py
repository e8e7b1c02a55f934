"""Identifiers (pipeline.core.ids): a prefix and a time-ordered, URL-safe body."""
from __future__ import annotations

import pytest

from pipeline.core import ids


def test_an_id_is_its_prefix_and_26_characters_of_the_lower_case_crockford_alphabet():
    value = ids.new_id("job")
    prefix, body = value.split("_")
    assert prefix == "job" and len(body) == 26
    assert set(body) <= set("0123456789abcdefghjkmnpqrstvwxyz")
    assert ids.is_id(value, "job") and ids.ID_PATTERN.match(value)


def test_ids_sort_by_creation_time(monkeypatch):
    # Given ids made at increasing (injected) times, one millisecond and one year apart
    stamps = iter([1_767_225_600.000, 1_767_225_600.001, 1_798_761_600.0])
    monkeypatch.setattr(ids.time, "time", lambda: next(stamps))
    made = [ids.new_id("job") for _ in range(3)]
    # Then their order as strings is their order in time, whatever the random part
    assert made == sorted(made)
    assert len(set(made)) == 3


def test_two_ids_made_in_the_same_millisecond_differ():
    assert len({ids.new_id("upl") for _ in range(1000)}) == 1000


def test_ids_made_in_one_millisecond_sort_in_the_order_they_were_made(monkeypatch):
    # Given a clock that stands still for a thousand ids, then steps back a second
    stamps = iter([1_767_225_600.0] * 1000 + [1_767_225_599.0])
    monkeypatch.setattr(ids.time, "time", lambda: next(stamps))
    made = [ids.new_id("job") for _ in range(1001)]
    # Then each sorts after the one before it, as a list of jobs submitted in a burst starts
    assert made == sorted(made) and len(set(made)) == 1001


@pytest.mark.parametrize("value, prefix", [
    ("", "job"), (None, "job"), ("job_", "job"), ("job_" + "0" * 25, "job"), ("job_" + "0" * 27, "job"),
    ("job_" + "0" * 25 + "u", "job"),  # u, i, l, o are not in the alphabet
    ("JOB_" + "0" * 26, "job"), ("upl_" + "0" * 26, "job"), ("job-" + "0" * 26, "job"),
])
def test_malformed_ids_or_another_prefix_are_not_ids(value, prefix):
    assert not ids.is_id(value, prefix)
