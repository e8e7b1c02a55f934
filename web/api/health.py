"""Liveness and readiness."""
from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from sqlalchemy import text

from pipeline.adapters import events
from pipeline.adapters.storage import open_storage
from pipeline.store.models import db
from pipeline.worker.brokerguard import probe_write
from web.auth import config

bp = Blueprint("health", __name__)
log = logging.getLogger("genline.web")


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


def _check(name: str, fn) -> str:
    """"ok", or "error: <kind>": the driver's text (hosts, database names) goes to the log only,
    since /readyz answers anyone."""
    try:
        fn()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure by name
        log.warning("readiness check failed check=%s error=%s: %s", name, exc.__class__.__name__, str(exc)[:300])
        return f"error: {exc.__class__.__name__}"


@bp.get("/readyz")
def readyz():
    def database():
        try:
            db.session.execute(text("SELECT 1"))
        finally:
            db.session.rollback()

    # A refused configuration is named by its variables only (each refusal starts with
    # one); what is wrong with them goes to the log, like every other check's detail.
    refusals = config().refusals()
    for reason in refusals:
        log.warning("readiness check failed check=config error=%s", reason)

    checks = {
        "config": "error: refused " + ", ".join(r.split()[0] for r in refusals) if refusals else "ok",
        "database": _check("database", database),
        # A write, not a ping: a Redis at maxmemory (noeviction) or read-only answers pings but refuses every send.
        "broker": _check("broker", lambda: probe_write(events.client())),
        "storage": _check("storage", lambda: open_storage(config()).check()),
    }
    ok = all(v == "ok" for v in checks.values())
    response = jsonify({"status": "ok" if ok else "unavailable", "checks": checks})
    response.status_code = 200 if ok else 503
    return response
