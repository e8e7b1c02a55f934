"""The pipeline's Flask app: config, database and Celery, without the web's routes.

The worker entry (``pipeline.worker.celery``) runs on this app; the web's
factory (``web.app.create_app``) builds on it and adds its blueprints.
"""
from __future__ import annotations

import time
from pathlib import Path

from flask import Flask
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError, OperationalError

from pipeline.adapters import events, logs, metrics, publish, tracing
from pipeline.config import Config, from_env_or_exit
from pipeline.store import autocommit, dblink, jobs
from pipeline.store.models import db
from pipeline.worker.celery_app import celery_init_app

MIGRATIONS = str(Path(__file__).resolve().parent / "store" / "migrations")
"""Alembic's folder; the web app registers Flask-Migrate on it (``web.app``): the worker and beat never migrate."""

PING_AFTER_IDLE_S = 1.0
"""A pooled connection unused for longer than this is pinged before use."""

SILENT_PING_S = 1.0
"""A ping that failed after this long met a silent link, not a closed connection (a restarted server)."""


def engine_options(cfg: Config) -> dict:
    url = cfg.database_url
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    # No pool_pre_ping: it pings at every checkout, which here is after every
    # commit (about a dozen times per job). _ping_if_idle pings only connections
    # that sat idle; one that dies while in use fails its statement, the pool is
    # invalidated, and the caller's database-error handling retries.
    # Every wait on the link is bounded (pipeline.store.dblink): a dead link is a
    # 503 or a retried step within seconds. The wait for a free pooled connection has
    # its own, longer bound: a full pool is usually a burst, not an outage (under
    # gevent a connection's holder can wait behind hundreds of runnable greenlets).
    args = dblink.connect_args(url, cfg.db_connect_timeout_s, cfg.db_link_timeout_s, cfg.db_server_timeouts)
    return {"pool_recycle": 1800, "pool_size": 5, "max_overflow": 10, "pool_timeout": cfg.db_pool_timeout_s,
            "connect_args": args}


def _note_checkin(_dbapi_connection, record) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection, record, _proxy) -> None:
    # Hand-written: SQLAlchemy's pre-ping has no idle threshold. Raising
    # DisconnectionError makes the pool drop this connection and check out another.
    last = record.info.get("checked_in_at")
    if last is None or time.monotonic() - last < PING_AFTER_IDLE_S:
        return
    started = time.monotonic()
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT 1")
        cursor.close()
        if not dbapi_connection.autocommit:
            dbapi_connection.rollback()
    except Exception as exc:  # noqa: BLE001 - any failure means: not usable
        if time.monotonic() - started >= SILENT_PING_S:
            # The ping waited out the link timeout: the link is silent, and a new
            # connection would wait as long again. Fail this checkout now (the
            # pool drops the connection): a 503, or a step retried in a moment.
            raise OperationalError("SELECT 1", None, exc) from exc
        raise DisconnectionError(f"stale pooled connection: {exc}") from exc


def _sqlite_pragmas(dbapi_connection, _record):
    # WAL lets the web process read while a worker writes; the busy timeout
    # makes concurrent writers wait instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_app(config: Config | None = None, app: Flask | None = None) -> Flask:
    """Wire ``config`` (or the environment), the database and Celery into ``app`` (or a new one)."""
    cfg = config or from_env_or_exit()
    logs.configure(cfg.log_format, cfg.log_level)
    metrics.configure(tenant_labels=cfg.metrics_tenant_labels)
    app = app or Flask("genline")
    app.extensions["genline.config"] = cfg
    options = engine_options(cfg)
    app.config.update(
        SECRET_KEY=cfg.secret_key,
        SQLALCHEMY_DATABASE_URI=cfg.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=options,
        MAX_CONTENT_LENGTH=cfg.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    if not cfg.database_url.startswith("sqlite"):
        app.config["SQLALCHEMY_BINDS"] = {autocommit.BIND: autocommit.bind_options(cfg.database_url, options)}
    if cfg.database_url.startswith("sqlite:///"):
        Path(cfg.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    db.init_app(app)
    with app.app_context():
        if cfg.database_url.startswith("sqlite"):
            event.listen(db.engine, "connect", _sqlite_pragmas)
        else:
            for engine in db.engines.values():
                event.listen(engine, "checkin", _note_checkin)
                event.listen(engine, "checkout", _ping_if_idle)
            autocommit.install(db.engines[autocommit.BIND])
    events.configure(cfg.redis_url)
    jobs.use_publisher(events.publish, publish.to_webhook)
    celery_init_app(app)
    tracing.setup(app)  # off unless OTEL_* variables ask for it (docs/tracing.md)
    return app
