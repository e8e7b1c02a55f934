"""The application factory: one place that wires config, database, Celery and routes."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from flask import Flask
from flask_migrate import Migrate
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError

from pipeline.adapters import events
from pipeline.config import Config, from_env_or_exit
from pipeline.store.models import db
from pipeline.worker.celery_app import celery_init_app

MIGRATIONS = str(Path(__file__).resolve().parent.parent / "pipeline" / "store" / "migrations")
migrate = Migrate()


PING_AFTER_IDLE_S = 1.0
"""A pooled connection unused for longer than this is pinged before use."""


def _engine_options(url: str) -> dict:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    # No pool_pre_ping: it pings at every checkout, which here is after every
    # commit (about a dozen times per job). _ping_if_idle pings only connections
    # that sat idle; one that dies while in use fails its statement, the pool is
    # invalidated, and the caller's database-error handling retries.
    return {"pool_recycle": 1800, "pool_size": 5, "max_overflow": 10}


def _note_checkin(_dbapi_connection, record) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection, record, _proxy) -> None:
    # Hand-written: SQLAlchemy's pre-ping has no idle threshold. Raising
    # DisconnectionError makes the pool drop this connection and check out another.
    last = record.info.get("checked_in_at")
    if last is None or time.monotonic() - last < PING_AFTER_IDLE_S:
        return
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT 1")
        cursor.close()
        dbapi_connection.rollback()
    except Exception as exc:  # noqa: BLE001 - any failure means: not usable
        raise DisconnectionError(f"stale pooled connection: {exc}") from exc


def _sqlite_pragmas(dbapi_connection, _record):
    # WAL lets the web process read while a worker writes; the busy timeout
    # makes concurrent writers wait instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def configure_logging() -> None:
    """key=value lines on stderr (``GENLINE_LOG_LEVEL``, default INFO)."""
    root = logging.getLogger("genline")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(os.environ.get("GENLINE_LOG_LEVEL", "INFO").upper())
        root.propagate = False


def create_app(config: Config | None = None) -> Flask:
    """Build the Flask app (and its Celery app) from ``config`` or the environment."""
    cfg = config or from_env_or_exit()
    configure_logging()
    app = Flask("genline", static_folder="static", template_folder="templates")
    app.extensions["genline.config"] = cfg
    app.config.update(
        SECRET_KEY=cfg.secret_key,
        SQLALCHEMY_DATABASE_URI=cfg.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(cfg.database_url),
        MAX_CONTENT_LENGTH=cfg.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    if cfg.database_url.startswith("sqlite:///"):
        Path(cfg.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS, render_as_batch=True)
    with app.app_context():
        if cfg.database_url.startswith("sqlite"):
            event.listen(db.engine, "connect", _sqlite_pragmas)
        else:
            event.listen(db.engine, "checkin", _note_checkin)
            event.listen(db.engine, "checkout", _ping_if_idle)
    events.configure(cfg.redis_url)
    celery_init_app(app)
    _register_routes(app)
    return app


def _register_routes(app: Flask) -> None:
    from web import limits
    from web.api import actions, errors, health, jobs, outputs, uploads
    limits.init_app(app)
    errors.register(app)
    for module in (jobs, actions, outputs, uploads, health):
        app.register_blueprint(module.bp)
    from web import cors, demo
    from web.api import events as events_api
    from web.api import webhooks
    for module in (events_api, webhooks, demo):
        app.register_blueprint(module.bp)
    from web.api import metrics, openapi
    for module in (metrics, openapi):
        app.register_blueprint(module.bp)
    cors.init_app(app)
    app.json.sort_keys = False
