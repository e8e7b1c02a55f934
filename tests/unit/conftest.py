"""The unit tier: tests that need no service (no Postgres, Redis, worker or network).

The shared fixtures that start services (tests/conftest.py) are overridden here so
that a unit test asking for one fails at once, naming the tier it belongs to.
"""
from __future__ import annotations

import pytest

SERVICE_FIXTURES = ("redis_server", "pg_database", "stack", "kinds_stack", "sqlite_stack", "tenant", "make_stack")


def _refuse(name: str):
    @pytest.fixture(name=name)
    def refused():
        pytest.fail(f"{name} starts services: a test that needs it belongs in tests/, not tests/unit/", pytrace=False)
    return refused


for _name in SERVICE_FIXTURES:
    globals()[f"_no_{_name}"] = _refuse(_name)
