"""The web's application factory: the pipeline's app (``pipeline.app``) plus the routes."""
from __future__ import annotations

from flask import Flask
from flask_migrate import Migrate

from pipeline import app as pipeline_app
from pipeline.config import Config
from pipeline.store.models import db
from web import cors, demo, limits
from web.api import actions, errors, health, jobs, metrics, openapi, outputs, uploads, webhooks
from web.api import events as events_api

MIGRATIONS = pipeline_app.MIGRATIONS
migrate = Migrate()
"""Flask-Migrate (Alembic) on the web app only: ``flask --app web db upgrade`` is the release
step. The worker's and beat's app (``pipeline.app``) leave it out: without Alembic their
app imports in 0.57 s instead of 0.67 s (``python -X importtime``, 3 runs each)."""


def create_app(config: Config | None = None) -> Flask:
    """Build the Flask app (and its Celery app) from ``config`` or the environment."""
    app = Flask("genline", static_folder="static", template_folder="templates")
    pipeline_app.create_app(config, app)
    migrate.init_app(app, db, directory=MIGRATIONS, render_as_batch=True)
    _register_routes(app)
    return app


def _register_routes(app: Flask) -> None:
    limits.init_app(app)
    errors.register(app)
    for module in (jobs, actions, outputs, uploads, health):
        app.register_blueprint(module.bp)
    for module in (events_api, webhooks, demo):
        app.register_blueprint(module.bp)
    for module in (metrics, openapi):
        app.register_blueprint(module.bp)
    cors.init_app(app)
    app.json.sort_keys = False
