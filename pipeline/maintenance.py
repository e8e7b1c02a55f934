"""Periodic work run by beat: the reaper and retention."""
from __future__ import annotations

import logging

from celery import shared_task

log = logging.getLogger("genline.maintenance")


@shared_task(name="genline.reap")
def reap() -> dict:
    """Drive stuck jobs on: re-dispatch lost messages, fail jobs past their deadline."""
    from pipeline.reaper import reap_once
    return reap_once()


@shared_task(name="genline.retention")
def retention() -> dict:
    """Delete jobs, prompts, events and outputs older than GENLINE_RETENTION_DAYS."""
    from pipeline.retention import purge_once
    return purge_once()
