"""The suite's schedule names real tests (tests/conftest.py). No services.

An entry of ``SLOWEST_FIRST`` that matches no test is silently ignored: the unit it
meant to start first then starts wherever collection puts it, possibly last.
"""
from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import SLOWEST_FIRST, SPLIT_PER_TEST

TESTS = Path(__file__).resolve().parent.parent


def test_every_slowest_first_entry_names_a_test_file_or_a_test_in_it():
    for entry in SLOWEST_FIRST:
        path, _, prefix = entry.partition("::")
        source = (TESTS / path).read_text() if (TESTS / path).is_file() else None
        assert source is not None, f"SLOWEST_FIRST names {path}, which is not a file under tests/"
        assert not prefix or re.search(rf"^def {re.escape(prefix)}", source, re.M), \
            f"SLOWEST_FIRST names {entry}, but {path} has no test starting with {prefix}"


def test_every_split_file_exists_and_holds_no_module_scoped_fixture():
    for path in SPLIT_PER_TEST:
        source = (TESTS / path).read_text()
        assert 'scope="module"' not in source, f"{path} shares a module-scoped fixture: it cannot go out test by test"
