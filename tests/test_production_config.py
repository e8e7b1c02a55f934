"""Production refuses to start with a placeholder or weak SECRET_KEY, or with the
`local` placeholder as default provider unless chosen; the message names the
variable and no process prints a traceback."""
from __future__ import annotations

import os
import subprocess

import pytest

from pipeline.config import Config, ConfigError
from tests import services
from tests.procfile import ROOT, procfile

STRONG = "3f9a1c0e7b5d2468ace13579bdf02468ace13579bdf0"
EXAMPLE_SECRET = next(line.split("=", 1)[1] for line in (ROOT / "deploy" / "env.example").read_text().splitlines()
                      if line.startswith("SECRET_KEY="))


def production(**extra) -> dict:
    env = {"GENLINE_PRODUCTION": "1", "SECRET_KEY": STRONG, "GENLINE_DEFAULT_PROVIDER": "openai",
           "GENLINE_PUBLIC_URL": "https://genline.example"}
    env.update(extra)
    return env


@pytest.mark.parametrize("secret, why", [
    (EXAMPLE_SECRET, "placeholder"),
    ("change-me", "placeholder"),
    ("s3cret", "too weak"),
    ("a" * 64, "too weak"),
])
def test_production_refuses_a_placeholder_or_weak_secret_key(secret, why):
    with pytest.raises(ConfigError, match=f"SECRET_KEY .*{why}"):
        Config.from_env(production(SECRET_KEY=secret))


def test_development_takes_any_secret_key():
    assert Config.from_env({"SECRET_KEY": "change-me"}).secret_key == "change-me"


def test_production_refuses_the_local_placeholder_as_an_implicit_default():
    env = production()
    del env["GENLINE_DEFAULT_PROVIDER"]
    with pytest.raises(ConfigError, match="GENLINE_DEFAULT_PROVIDER is not set"):
        Config.from_env(env)


def test_the_default_provider_is_a_name_or_a_list_and_local_may_be_chosen():
    assert Config.from_env(production(GENLINE_DEFAULT_PROVIDER="local")).default_providers == ("local",)
    assert Config.from_env(production(GENLINE_DEFAULT_PROVIDER="openai, http")).default_providers == ("openai", "http")
    assert Config.from_env({}).default_providers == ("local",)
    with pytest.raises(ConfigError, match="GENLINE_DEFAULT_PROVIDER .*'dalle'"):
        Config.from_env({"GENLINE_DEFAULT_PROVIDER": "dalle"})


def test_a_job_naming_no_provider_gets_the_deployment_default():
    from web.schemas import JobCreate
    from web.submit import _providers
    cfg = Config.from_env({"GENLINE_DEFAULT_PROVIDER": "http,local"})
    assert _providers(JobCreate(prompt="p"), cfg) == ["http", "local"]
    assert _providers(JobCreate(prompt="p", provider="openai"), cfg) == ["openai"]


def test_readyz_is_not_ok_in_a_refused_configuration(tmp_path):
    from web import create_app
    cfg = Config.from_env({"STORAGE_URL": tmp_path.as_uri(), "GENLINE_VAR_DIR": str(tmp_path)})
    app = create_app(cfg.model_copy(update={"production": True, "secret_key": "change-me-please"}))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "SECRET_KEY" in response.get_json()["checks"]["config"]


@pytest.mark.slow
@pytest.mark.parametrize("process", ["release", "web", "worker", "beat", "flower"])
@pytest.mark.parametrize("variable, value, expected", [
    ("SECRET_KEY", EXAMPLE_SECRET, "SECRET_KEY is the placeholder"),
    ("GENLINE_DEFAULT_PROVIDER", "", "GENLINE_DEFAULT_PROVIDER is not set"),
])
def test_every_procfile_process_refuses_to_start_naming_the_variable(process, variable, value, expected, tmp_path):
    # Given the production environment of deploy/env.example with one variable wrong
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENLINE_", "SECRET_KEY", "DATABASE_URL"))}
    env.update(production(**{variable: value}), PORT=str(services.free_port()), FLOWER_BASIC_AUTH="ops:pw",
               FLOWER_PORT=str(services.free_port()), HOME=str(tmp_path), GENLINE_VAR_DIR=str(tmp_path),
               REDIS_URL=f"redis://127.0.0.1:{services.free_port()}/0", DATABASE_URL="postgres://nobody@127.0.0.1:1/none",
               PATH=os.path.dirname(os.sys.executable) + os.pathsep + env.get("PATH", ""))
    # When the Procfile's line for that process starts
    done = subprocess.run(["bash", "-c", procfile()[process]], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    # Then it exits at once, non-zero, with one line naming the variable and no traceback
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert expected in output, output
    assert "Traceback" not in output, output
