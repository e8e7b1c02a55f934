"""Retention: jobs (with their prompts, events and outputs) and uploads older than
GENLINE_RETENTION_DAYS are deleted. Run by beat hourly, and by `genline retention`.

Only terminal jobs are deleted; an active job, however old, is the reaper's.
Stored objects are deleted before the rows, so a crash in between leaves rows
that the next run deletes again rather than objects nobody can find.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select

from pipeline.adapters.storage import open_storage
from pipeline.core.lifecycle import TERMINAL
from pipeline.store.models import Job, JobEvent, StagedOutput, Upload, WebhookDelivery, db, utcnow

log = logging.getLogger("genline.retention")

BATCH = 500


def purge_once(now=None) -> dict:
    """Delete one batch of expired jobs and uploads; returns how many of each."""
    cfg = current_app.extensions["genline.config"]
    cutoff = (now or utcnow()) - timedelta(days=cfg.retention_days)
    storage = open_storage(cfg)
    job_ids = db.session.execute(
        select(Job.id).where(Job.created_at < cutoff, Job.status.in_([s.value for s in TERMINAL])).limit(BATCH)
    ).scalars().all()
    uploads = db.session.execute(
        select(Upload.id, Upload.storage_key).where(Upload.created_at < cutoff).limit(BATCH)
    ).all()
    db.session.rollback()
    for job_id in job_ids:
        storage.delete_prefix(f"outputs/{job_id}/")
    for _upload_id, key in uploads:
        storage.delete_prefix(key)
    if job_ids:
        for model in (JobEvent, StagedOutput, WebhookDelivery):
            db.session.execute(delete(model).where(model.job_id.in_(job_ids)))
        db.session.execute(delete(Job).where(Job.id.in_(job_ids)))
    if uploads:
        db.session.execute(delete(Upload).where(Upload.id.in_([u[0] for u in uploads])))
    db.session.commit()
    done = {"jobs": len(job_ids), "uploads": len(uploads)}
    if job_ids or uploads:
        log.info("retention deleted jobs=%s uploads=%s cutoff=%s", done["jobs"], done["uploads"], cutoff.isoformat())
    return done
