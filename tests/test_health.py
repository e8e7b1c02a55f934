"""Liveness and readiness."""
from __future__ import annotations

from pipeline.config import Config
from tests import services
from web import create_app


def test_healthz_and_readyz_on_a_working_stack(stack):
    assert stack.client.get("/healthz").get_json() == {"status": "ok"}
    ready = stack.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"config": "ok", "database": "ok", "broker": "ok", "storage": "ok"}


def test_readyz_names_what_is_down(tmp_path, pg_database):
    # Given a web app whose Redis does not answer and whose database refuses connections
    dead = services.free_port()
    app = create_app(Config.from_env({
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{services.free_port()}/nothing",
        "REDIS_URL": f"redis://127.0.0.1:{dead}/0", "STORAGE_URL": tmp_path.as_uri(),
    }))
    # When readiness is asked
    response = app.test_client().get("/readyz")
    # Then it is 503 and says which checks failed; liveness still answers
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["broker"].startswith("error") and checks["database"].startswith("error")
    assert checks["storage"] == "ok"
    assert app.test_client().get("/healthz").status_code == 200
