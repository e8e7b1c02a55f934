"""Liveness and readiness."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from pipeline import events
from pipeline.models import db
from pipeline.storage import open_storage
from web.auth import config

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


def _check(fn) -> str:
    try:
        fn()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure by name
        return f"error: {exc.__class__.__name__}: {str(exc)[:200]}"


@bp.get("/readyz")
def readyz():
    def database():
        try:
            db.session.execute(text("SELECT 1"))
        finally:
            db.session.rollback()

    def configuration():
        refusals = config().refusals()
        if refusals:
            raise RuntimeError("; ".join(refusals))

    checks = {
        "config": _check(configuration),
        "database": _check(database),
        "broker": _check(lambda: events.client().ping()),
        "storage": _check(lambda: open_storage(config()).check()),
    }
    ok = all(v == "ok" for v in checks.values())
    response = jsonify({"status": "ok" if ok else "unavailable", "checks": checks})
    response.status_code = 200 if ok else 503
    return response
