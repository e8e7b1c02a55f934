"""`genline keys create|list|revoke`: keys shown once, stored as hashes, bound to a
tenant with optional limits; static keys from GENLINE_API_KEYS keep working."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import pytest
from sqlalchemy import select

from pipeline.store.models import ApiKey, db
from tests import services


@pytest.fixture
def genline(stack, monkeypatch, capsys):
    """Run ``genline ARGS`` through its entry point (pipeline.cli.main) with the stack's environment."""
    for name in [k for k in os.environ if k.startswith(("GENLINE_", "DATABASE_URL", "REDIS_URL", "STORAGE_URL"))]:
        monkeypatch.delenv(name)
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)

    def run(*args) -> subprocess.CompletedProcess:
        from pipeline.cli import main
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)
    return run


def created_key(result) -> tuple[str, str]:
    assert result.returncode == 0, result.stderr
    key_id = re.search(r"key (key_\w+)", result.stdout).group(1)
    secret = re.search(r"^(gl_\S+)$", result.stdout, re.M).group(1)
    return key_id, secret


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def test_create_shows_the_key_once_and_stores_only_its_hash(stack, genline):
    tenant = f"cli-{os.urandom(3).hex()}"
    # When an operator creates a key
    key_id, secret = created_key(genline("keys", "create", tenant, "--name", "ci"))

    # Then the database holds its hash and prefix, never the key
    with stack.app.app_context():
        row = db.session.execute(select(ApiKey).where(ApiKey.id == key_id)).scalar_one()
        values = {c.key: str(getattr(row, c.key)) for c in ApiKey.__table__.columns}
        db.session.rollback()
    assert values["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert values["tenant_id"] == tenant and secret not in values.values() and secret.startswith(values["prefix"])

    # And `list` shows the key by id and prefix only
    listing = genline("keys", "list", "--tenant", tenant)
    assert listing.returncode == 0 and key_id in listing.stdout and "active" in listing.stdout
    assert secret not in listing.stdout

    # And the key works against the API as that tenant
    job = stack.submit(bearer(secret), {"prompt": "cli", "params": {"size": "16x16"}})
    assert stack.client.get("/v1/jobs", headers=bearer(secret)).get_json()["data"][0]["id"] == job["id"]


def test_revoked_keys_are_refused(stack, genline):
    key_id, secret = created_key(genline("keys", "create", "cli-revoke"))
    assert stack.client.get("/v1/jobs", headers=bearer(secret)).status_code == 200

    revoked = genline("keys", "revoke", key_id)
    assert revoked.returncode == 0 and key_id in revoked.stdout

    answer = stack.client.get("/v1/jobs", headers=bearer(secret))
    assert answer.status_code == 401 and answer.get_json()["error"]["code"] == "unauthorized"
    assert "revoked" in genline("keys", "list", "--tenant", "cli-revoke").stdout
    # Revoking twice, or an unknown key, says so and exits non-zero
    assert genline("keys", "revoke", key_id).returncode == 1
    assert genline("keys", "revoke", "key_doesnotexist").returncode == 1


def test_a_keys_own_rate_limit_and_concurrency_are_stored_and_used(stack, genline):
    key_id, secret = created_key(genline("keys", "create", f"cli-{os.urandom(3).hex()}",
                                         "--rate-limit", "2/minute", "--concurrency", "3"))
    with stack.app.app_context():
        limits = db.session.execute(select(ApiKey.rate_limit, ApiKey.concurrency).where(ApiKey.id == key_id)).one()
        db.session.rollback()
    assert tuple(limits) == ("2/minute", 3)
    codes = [stack.client.post("/v1/jobs", json={"prompt": "x", "params": {"size": "16x16"}}, headers=bearer(secret)).status_code
             for _ in range(3)]
    assert codes == [202, 202, 429]


def test_static_keys_from_the_environment_keep_working(stack):
    # conftest sets GENLINE_API_KEYS=static-tenant:static-test-key
    answer = stack.client.get("/v1/jobs", headers=bearer("static-test-key"))
    assert answer.status_code == 200
    assert stack.client.get("/v1/jobs", headers=bearer("static-test-key-not")).status_code == 401


def test_the_installed_command_runs_with_the_environment(stack):
    # The real `genline` entry point in its own process, as an operator runs it
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "keys", "create", "cli-proc"], env=stack.env,
                            cwd=services.ROOT, capture_output=True, text=True, timeout=60)
    _key_id, secret = created_key(result)
    assert stack.client.get("/v1/jobs", headers=bearer(secret)).status_code == 200


def test_a_bad_environment_is_a_clear_cli_error(stack):
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "keys", "list"],
                            env={**stack.env, "GENLINE_API_KEYS": "no-colon"}, cwd=services.ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "GENLINE_API_KEYS" in result.stderr and "Traceback" not in result.stderr


def test_create_refuses_limits_the_api_could_not_use(stack, genline):
    for args, named in ((["--rate-limit", "lots"], "--rate-limit"), (["--rate-limit", "0/minute"], "--rate-limit"),
                        (["--concurrency", "0"], "--concurrency")):
        result = genline("keys", "create", "cli-bad", *args)
        assert result.returncode == 2 and named in result.stderr and "gl_" not in result.stdout
    assert "cli-bad" not in genline("keys", "list").stdout
