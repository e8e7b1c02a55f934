"""Periodic work run by beat: the reaper, admission and retention."""
from __future__ import annotations

import logging

from celery import shared_task

log = logging.getLogger("genline.maintenance")


@shared_task(name="genline.reap")
def reap() -> dict:
    """Drive stuck jobs on: re-dispatch lost messages, fail jobs past their deadline."""
    from pipeline.reaper import reap_once
    return reap_once()


@shared_task(name="genline.admit")
def admit() -> dict:
    """Send held jobs whose time came: replays at GENLINE_REPLAY_RATE, throttled jobs when their tenant may start."""
    from pipeline.admission import admit_once
    return admit_once()


@shared_task(name="genline.retention")
def retention() -> dict:
    """Delete jobs, prompts, events and outputs older than GENLINE_RETENTION_DAYS."""
    from pipeline.retention import purge_once
    return purge_once()
