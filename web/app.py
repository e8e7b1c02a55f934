"""The web's application factory: the pipeline's app (``pipeline.app``) plus the routes."""
from __future__ import annotations

from flask import Flask

from pipeline import app as pipeline_app
from pipeline.config import Config
from web import cors, demo, limits
from web.api import actions, errors, health, jobs, metrics, openapi, outputs, uploads, webhooks
from web.api import events as events_api

MIGRATIONS = pipeline_app.MIGRATIONS
migrate = pipeline_app.migrate


def create_app(config: Config | None = None) -> Flask:
    """Build the Flask app (and its Celery app) from ``config`` or the environment."""
    app = Flask("genline", static_folder="static", template_folder="templates")
    pipeline_app.create_app(config, app)
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
