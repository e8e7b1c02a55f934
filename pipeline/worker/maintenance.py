"""Periodic work run by beat: the reaper, admission and retention; the reaper and retention one
pass at a time (``pipeline.worker.periodic``)."""
from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from pipeline.service.admission import admit_once
from pipeline.service.retention import purge_once
from pipeline.worker.periodic import alone
from pipeline.worker.reaper import reap_once

log = logging.getLogger("genline.maintenance")

RETENTION_LOCK_S = 3600
"""Retention runs hourly; a pass may delete many outputs from storage."""


def reap_lock_s() -> float:
    """A reaper pass takes milliseconds; one killed with its worker holds back the next at most this long.

    Short, so that a worker lost while it ran a pass is still recovered within
    lease + this + an interval (8 + 4 + 2 s by default).
    """
    return max(4.0, 2 * current_app.extensions["genline.config"].reaper_interval_s)


@shared_task(name="genline.reap")
def reap() -> dict:
    """Drive stuck jobs on: re-dispatch lost messages, fail jobs past their deadline."""
    with alone("reap", reap_lock_s()) as mine:
        return reap_once() if mine else {"skipped": "another pass is running"}


@shared_task(name="genline.admit")
def admit() -> dict:
    """Send held jobs whose time came: replays at GENLINE_REPLAY_RATE, throttled jobs when their tenant may start."""
    return admit_once()


@shared_task(name="genline.retention")
def retention() -> dict:
    """Delete jobs, prompts, events and outputs older than GENLINE_RETENTION_DAYS."""
    with alone("retention", RETENTION_LOCK_S) as mine:
        return purge_once() if mine else {"skipped": "another pass is running"}
