"""Database tables. The job row is the source of truth; the broker carries work only.

The schema is created by the Alembic migrations in ``pipeline/store/migrations``.
"""
from __future__ import annotations

from datetime import datetime, timezone

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import JSON, Index, LargeBinary, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import DateTime, TypeDecorator


class UTCDateTime(TypeDecorator):
    """Timestamps stored naive-UTC and read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
Column = db.Column


class Tenant(db.Model):
    """Who owns jobs. Created on first use of a key; limits may be set per tenant."""

    __tablename__ = "tenants"
    id = Column(db.String(64), primary_key=True)
    concurrency = Column(db.Integer, nullable=True)
    rate_limit = Column(db.String(32), nullable=True)
    webhook_secret = Column(db.String(128), nullable=True)
    throttle = Column(db.String(32), nullable=True)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)


class ApiKey(db.Model):
    """An API key made by the ops CLI, stored as its SHA-256 hash only."""

    __tablename__ = "api_keys"
    id = Column(db.String(40), primary_key=True)
    tenant_id = Column(db.String(64), nullable=False, index=True)
    name = Column(db.String(200), nullable=False, default="")
    key_hash = Column(db.String(64), nullable=False, unique=True)
    prefix = Column(db.String(16), nullable=False)
    rate_limit = Column(db.String(32), nullable=True)
    concurrency = Column(db.Integer, nullable=True)
    throttle = Column(db.String(32), nullable=True)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    revoked_at = Column(UTCDateTime, nullable=True)


class Job(db.Model):
    """One generation request and everything known about it."""

    __tablename__ = "jobs"
    id = Column(db.String(40), primary_key=True)
    tenant_id = Column(db.String(64), nullable=False)
    status = Column(db.String(16), nullable=False)
    step = Column(db.String(16), nullable=True)
    operation = Column(db.String(16), nullable=False)
    providers = Column(JSON, nullable=False)
    provider = Column(db.String(32), nullable=True)
    model = Column(db.String(100), nullable=True)
    prompt = Column(db.Text, nullable=True)
    prompt_sha256 = Column(db.String(64), nullable=False)
    params = Column(JSON, nullable=False)
    inputs = Column(JSON, nullable=True)
    priority = Column(db.String(8), nullable=False, default="normal")
    timeout_s = Column(db.Float, nullable=False)
    deadline_s = Column(db.Float, nullable=False)
    max_attempts = Column(db.Integer, nullable=False)
    attempt = Column(db.Integer, nullable=False, default=0)
    lost_count = Column(db.Integer, nullable=False, default=0)
    progress = Column(db.Float, nullable=True)
    error = Column(JSON, nullable=True)
    outputs = Column(JSON, nullable=True)
    step_outputs = Column(JSON, nullable=False, default=dict)
    timing = Column(JSON, nullable=False, default=dict)
    job_metadata = Column("metadata", JSON, nullable=False, default=dict)
    webhook = Column(JSON, nullable=True)
    idempotency_key = Column(db.String(255), nullable=True)
    request_sha256 = Column(db.String(64), nullable=True)
    lease_owner = Column(db.String(64), nullable=True)
    lease_until = Column(UTCDateTime, nullable=True)
    # A queued job held out of the queues (``pipeline.service.admission``): "replay" waits for
    # the replay admission rate, "throttle" for its tenant's throttle; admitted from admit_at.
    held = Column(db.String(16), nullable=True)
    admit_at = Column(UTCDateTime, nullable=True)
    event_seq = Column(db.Integer, nullable=False, default=0)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    started_at = Column(UTCDateTime, nullable=True)
    completed_at = Column(UTCDateTime, nullable=True)
    deadline_at = Column(UTCDateTime, nullable=False)
    updated_at = Column(UTCDateTime, nullable=False, default=utcnow)

    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency"),
        Index("ix_jobs_tenant_id_id", "tenant_id", "id"),
        Index("ix_jobs_status_deadline", "status", "deadline_at"),
        Index("ix_jobs_tenant_status_step", "tenant_id", "status", "step"),
        Index("ix_jobs_held_admit_at", "held", "admit_at"),
    )


class JobEvent(db.Model):
    """The job's event log: authoritative; Redis pub/sub is only the fast path."""

    __tablename__ = "job_events"
    id = Column(db.Integer, primary_key=True, autoincrement=True)
    job_id = Column(db.String(40), db.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    seq = Column(db.Integer, nullable=False)
    type = Column(db.String(16), nullable=False)
    data = Column(JSON, nullable=False, default=dict)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)

    __table_args__ = (UniqueConstraint("job_id", "seq", name="uq_job_events_job_seq"),)


class StagedOutput(db.Model):
    """Image bytes made by ``generate`` and not yet stored by ``upload``.

    Kept in the database so that a failed upload is retried without generating
    again, on whichever worker picks it up.
    """

    __tablename__ = "staged_outputs"
    job_id = Column(db.String(40), db.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    n = Column(db.Integer, primary_key=True)
    media_type = Column(db.String(32), nullable=False)
    data = Column(LargeBinary, nullable=False)
    provider = Column(db.String(32), nullable=True)
    model = Column(db.String(100), nullable=True)


class Upload(db.Model):
    """An input image uploaded for edit or inpaint."""

    __tablename__ = "uploads"
    id = Column(db.String(40), primary_key=True)
    tenant_id = Column(db.String(64), nullable=False, index=True)
    storage_key = Column(db.String(255), nullable=False)
    media_type = Column(db.String(32), nullable=False)
    width = Column(db.Integer, nullable=False)
    height = Column(db.Integer, nullable=False)
    bytes = Column(db.Integer, nullable=False)
    sha256 = Column(db.String(64), nullable=False)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)


class WebhookDelivery(db.Model):
    """One attempt to deliver one event of a job to its webhook URL."""

    __tablename__ = "webhook_deliveries"
    id = Column(db.Integer, primary_key=True, autoincrement=True)
    job_id = Column(db.String(40), db.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True)
    message_id = Column(db.String(40), nullable=False)
    event_type = Column(db.String(16), nullable=False)
    event_seq = Column(db.Integer, nullable=False)
    attempt = Column(db.Integer, nullable=False)
    url = Column(db.Text, nullable=False)
    status_code = Column(db.Integer, nullable=True)
    error = Column(db.Text, nullable=True)
    duration_ms = Column(db.Float, nullable=True)
    delivered = Column(db.Boolean, nullable=False, default=False)
    next_attempt_at = Column(UTCDateTime, nullable=True)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
