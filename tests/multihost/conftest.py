"""The multi-host tier: one bed per test module (tests/multihost/bed.py), torn down
(every process killed by pid, every namespace and link deleted) even when a test fails."""
from __future__ import annotations

import pytest

from tests.multihost.bed import bed_or_missing


@pytest.fixture(scope="module")
def bed(log_dir):
    made = bed_or_missing(log_dir)
    try:
        yield made
    finally:
        made.close()
