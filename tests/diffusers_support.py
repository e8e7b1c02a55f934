"""Shared by the diffusers tests: the extra's presence, and the tiny model's directory."""
from __future__ import annotations

import importlib.util
import re

import pytest

from tests import services


def require_extra() -> None:
    """Skip without ``genline[diffusers]`` locally; fail in CI, which installs it (make test)."""
    missing = [name for name in ("torch", "diffusers", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        message = (f"genline[diffusers] is not installed ({', '.join(missing)} missing): "
                   "pip install torch==2.13.0 -e '.[diffusers]'")
        pytest.fail(message) if services.IN_CI else pytest.skip(message)


WORKER_ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
"""The worker runs offline, and on one CPU thread: two helpers' tests share two cores."""

STOPPED = re.compile(r"diffusers run stopped job_id=(?P<job>\S+) reason=(?P<reason>\S+) "
                     r"signalled_at_step=(?P<signalled>\S+) stopped_at_step=(?P<stopped>\d+) steps=(?P<steps>\d+)")


def stopped_line(log: str, job_id: str) -> dict | None:
    """The provider's log line of a run stopped at a step boundary, parsed."""
    for match in STOPPED.finditer(log):
        if match["job"] == job_id:
            return {"reason": match["reason"], "steps": int(match["steps"]), "stopped": int(match["stopped"]),
                    "signalled": None if match["signalled"] == "None" else int(match["signalled"])}
    return None
