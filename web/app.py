"""The application factory: one place that wires config, database, Celery and routes."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask
from flask_migrate import Migrate
from sqlalchemy import event

from pipeline import events
from pipeline.celery_app import celery_init_app
from pipeline.config import Config
from pipeline.models import db

MIGRATIONS = str(Path(__file__).resolve().parent.parent / "pipeline" / "migrations")
migrate = Migrate()


def _engine_options(url: str) -> dict:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    return {"pool_pre_ping": True, "pool_recycle": 1800, "pool_size": 5, "max_overflow": 10}


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
    cfg = config or Config.from_env()
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
    if cfg.database_url.startswith("sqlite"):
        with app.app_context():
            event.listen(db.engine, "connect", _sqlite_pragmas)
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
    from web.api import events as events_api, webhooks
    for module in (events_api, webhooks, demo):
        app.register_blueprint(module.bp)
    from web.api import metrics, openapi
    for module in (metrics, openapi):
        app.register_blueprint(module.bp)
    cors.init_app(app)
    app.json.sort_keys = False
