"""The TypeScript client's tests (clients/js, `npm test`: Node's test runner) against a live genline.

This starts the server (gunicorn on the shared stack) and hands the Node tests its
URL, fresh API keys and the deployment's webhook secret.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from pipeline.adapters.webhooks import derived_secret
from tests import services

JS = services.ROOT / "clients" / "js"


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        message = "node and npm (Node 18+) are needed for the TypeScript client's tests"
        pytest.fail(message) if services.IN_CI else pytest.skip(message)
    return npm


@pytest.mark.slow
def test_typescript_client_against_a_live_stack(stack, log_dir):
    # Given node with the package's dev dependencies, and a running genline
    npm = _npm()
    if not (JS / "node_modules" / "typescript").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, timeout=300)
    proc, url = services.start_gunicorn(stack.env, log_dir)
    try:
        keys = {name: stack.new_tenant("js")["Authorization"].split(" ", 1)[1]
                for name in ("GENLINE_API_KEY", "GENLINE_API_KEY_IDEM", "GENLINE_API_KEY_LIST")}
        env = {**os.environ, **keys, "GENLINE_URL": url,
               "GENLINE_WEBHOOK_SECRET": derived_secret(stack.env["SECRET_KEY"])}

        # When its tests run (`npm test`: build, then node --test)
        done = subprocess.run([npm, "test"], cwd=JS, env=env, capture_output=True, text=True, timeout=600)
    finally:
        proc.stop()

    # Then every one passed, and none was skipped for want of the live server
    report = done.stdout[-6000:] + done.stderr[-3000:]
    assert done.returncode == 0, report
    assert "# fail 0" in done.stdout and "# skipped 0" in done.stdout, report
