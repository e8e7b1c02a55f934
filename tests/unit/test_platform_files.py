"""Platform files, checked against their platforms' documented keys (no network:
the documented keys are written here, with a link to the page that lists them),
and their commands checked against the Procfile's: one command per process everywhere."""
from __future__ import annotations

import json
import re
import secrets

import pytest
import yaml

from pipeline.config import Config, secret_key_problem
from tests.procfile import ROOT, procfile, squash

PROCFILE = procfile()


def test_the_procfile_runs_release_web_both_worker_kinds_beat_and_flower_with_no_local_file():
    assert list(PROCFILE) == ["release", "web", "worker", "compute", "beat", "flower"]
    # Each worker kind names its pool (issue 14): many waiting jobs on gevent, Celery's time limits on prefork
    assert "-P gevent" in PROCFILE["worker"] and "-P prefork" in PROCFILE["compute"]
    # Beat keeps its schedule and lock in Redis (celery-redbeat): no --schedule file
    # in a directory a fresh checkout lacks, and two beats may run.
    assert "--schedule" not in PROCFILE["beat"] and " -s " not in PROCFILE["beat"]
    # And the Procfile says so where an operator sizes the formation (issue 13)
    assert "# beat: one or more" in (ROOT / "Procfile").read_text()
    assert "--basic-auth=" in PROCFILE["flower"]


def test_python_version_is_pinned_for_the_buildpacks():
    # https://devcenter.heroku.com/articles/python-support#specifying-a-python-version
    # https://render.com/docs/python-version
    assert (ROOT / ".python-version").read_text().strip() == "3.11"


# --- app.json: https://devcenter.heroku.com/articles/app-json-schema
# (Dokku reads the same file: https://dokku.com/docs/advanced-usage/deployment-tasks/
# and https://dokku.com/docs/deployment/zero-downtime-deploys/ for "healthchecks").
APP_JSON_KEYS = {"name", "description", "keywords", "website", "repository", "logo", "success_url", "scripts",
                 "env", "formation", "image", "addons", "buildpacks", "environments", "stack", "healthchecks", "cron"}
APP_JSON_ENV_KEYS = {"description", "value", "required", "generator"}
APP_JSON_FORMATION_KEYS = {"quantity", "size"}
APP_JSON_ADDON_KEYS = {"plan", "as", "options"}
HEALTHCHECK_KEYS = {"type", "name", "description", "path", "attempts", "wait", "timeout", "initialDelay",
                    "port", "content", "command", "uptime", "scheme", "httpHeaders", "listening", "onFailure"}


@pytest.fixture(scope="module")
def app_json() -> dict:
    return json.loads((ROOT / "app.json").read_text())


def test_app_json_uses_only_documented_keys(app_json):
    assert set(app_json) <= APP_JSON_KEYS
    for name, spec in app_json["env"].items():
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name)
        assert set(spec) <= APP_JSON_ENV_KEYS, name
        assert spec.get("generator", "secret") == "secret", name
    for spec in app_json["formation"].values():
        assert set(spec) <= APP_JSON_FORMATION_KEYS and isinstance(spec["quantity"], int)
    for addon in app_json["addons"]:
        assert isinstance(addon, str) or set(addon) <= APP_JSON_ADDON_KEYS
    for checks in app_json.get("healthchecks", {}).values():
        assert all(set(check) <= HEALTHCHECK_KEYS and check["type"] in ("startup", "liveness", "readiness")
                   for check in checks)


def test_app_json_provisions_postgres_and_redis_and_a_formation_for_every_process(app_json):
    plans = [addon if isinstance(addon, str) else addon["plan"] for addon in app_json["addons"]]
    assert {plan.split(":")[0] for plan in plans} == {"heroku-postgresql", "heroku-redis"}
    # release is not a formation: Heroku and Dokku run it once per deploy.
    assert set(app_json["formation"]) == set(PROCFILE) - {"release"}
    assert set(app_json["formation"]) <= set(app_json.get("healthchecks", {})) | set(PROCFILE)


def test_app_json_env_gives_a_production_config_that_starts(app_json):
    # Given what Heroku sets: generated secrets (64 hex characters), the values, the
    # add-ons' URLs (postgres:// and rediss://), and a value for each required variable
    env = {"DATABASE_URL": "postgres://u:p@db.example:5432/d", "REDIS_URL": "rediss://:p@redis.example:6380"}
    samples = {"GENLINE_DEFAULT_PROVIDER": "openai", "STORAGE_URL": "s3://bucket/genline",
               "FLOWER_BASIC_AUTH": "ops:pw", "GENLINE_PUBLIC_URL": "https://genline.example"}
    for name, spec in app_json["env"].items():
        if spec.get("generator") == "secret":
            env[name] = secrets.token_hex(32)
        elif "value" in spec:
            env[name] = spec["value"]
        elif spec.get("required"):
            env[name] = samples[name]
    assert env["GENLINE_PRODUCTION"] == "1" and secret_key_problem(env["SECRET_KEY"]) is None
    # Then production accepts it
    cfg = Config.from_env(env)
    assert cfg.production and cfg.default_providers == ("openai",)
    assert cfg.redis_url == "rediss://:p@redis.example:6380?ssl_cert_reqs=none"


# --- render.yaml: https://render.com/docs/blueprint-spec
RENDER_KEYS = {"services", "databases", "envVarGroups", "previews", "projects", "ungrouped"}
RENDER_SERVICE_TYPES = {"web", "worker", "pserv", "cron", "keyvalue", "redis"}
RENDER_SERVICE_KEYS = {"type", "name", "runtime", "env", "plan", "region", "repo", "branch", "rootDir",
                       "buildCommand", "startCommand", "preDeployCommand", "healthCheckPath", "envVars",
                       "numInstances", "scaling", "autoDeploy", "autoDeployTrigger", "buildFilter", "disk",
                       "domains", "dockerfilePath", "dockerContext", "dockerCommand", "image", "ipAllowList",
                       "maxmemoryPolicy", "schedule", "previews", "maxShutdownDelaySeconds", "buildPlan",
                       "headers", "routes", "staticPublishPath", "pullRequestPreviewsEnabled", "registryCredential"}
RENDER_ENVVAR_FORMS = [{"key", "value"}, {"key", "generateValue"}, {"key", "sync"}, {"key", "fromDatabase"},
                       {"key", "fromService"}, {"fromGroup"}]
RENDER_DB_KEYS = {"name", "databaseName", "user", "plan", "region", "postgresMajorVersion", "ipAllowList",
                  "diskSizeGB", "highAvailability", "readReplicas", "previewPlan"}
MAXMEMORY_POLICIES = {"noeviction", "allkeys-lru", "volatile-lru", "allkeys-random", "volatile-random",
                      "volatile-ttl", "allkeys-lfu", "volatile-lfu"}


@pytest.fixture(scope="module")
def render() -> dict:
    return yaml.safe_load((ROOT / "render.yaml").read_text())


def _render_services(render) -> dict[str, dict]:
    return {service["name"]: service for service in render["services"]}


def test_render_yaml_uses_only_documented_keys(render):
    assert set(render) <= RENDER_KEYS
    for service in render["services"]:
        assert service["type"] in RENDER_SERVICE_TYPES
        assert set(service) <= RENDER_SERVICE_KEYS, set(service) - RENDER_SERVICE_KEYS
        for var in service.get("envVars", []):
            assert set(var) in RENDER_ENVVAR_FORMS, var
    for group in render.get("envVarGroups", []):
        assert set(group) <= {"name", "envVars"}
        assert all(set(var) in RENDER_ENVVAR_FORMS[:3] for var in group["envVars"])
    for database in render["databases"]:
        assert set(database) <= RENDER_DB_KEYS


def test_render_yaml_runs_every_process_on_postgres_and_a_noeviction_key_value(render):
    services = _render_services(render)
    kv = [s for s in services.values() if s["type"] == "keyvalue"]
    assert len(kv) == 1 and kv[0]["maxmemoryPolicy"] == "noeviction" and "ipAllowList" in kv[0]
    assert kv[0]["maxmemoryPolicy"] in MAXMEMORY_POLICIES
    db_name = render["databases"][0]["name"]
    for service in services.values():
        if service["type"] == "keyvalue":
            continue
        sources = {var["key"]: var for var in service["envVars"] if "key" in var}
        assert sources["DATABASE_URL"]["fromDatabase"] == {"name": db_name, "property": "connectionString"}
        assert sources["REDIS_URL"]["fromService"]["name"] == kv[0]["name"]
    # Flower is its own web service, behind basic auth set in the dashboard, on Render's port
    flower = services["genline-flower"]
    flower_vars = {var["key"]: var for var in flower["envVars"] if "key" in var}
    assert flower["type"] == "web" and flower_vars["FLOWER_BASIC_AUTH"] == {"key": "FLOWER_BASIC_AUTH", "sync": False}
    assert flower_vars["FLOWER_PORT"]["value"] == flower_vars["PORT"]["value"]


def render_commands(render) -> dict[str, str]:
    services = _render_services(render)
    return {"release": services["genline-web"]["preDeployCommand"],
            **{name: services[f"genline-{name}"]["startCommand"] for name in ("web", "worker", "compute", "beat", "flower")}}


# --- compose.yaml: https://docs.docker.com/reference/compose-file/services/
COMPOSE_KEYS = {"name", "services", "volumes", "networks", "configs", "secrets", "include"}
COMPOSE_SERVICE_KEYS = {"build", "image", "command", "entrypoint", "environment", "env_file", "depends_on",
                        "healthcheck", "ports", "expose", "volumes", "restart", "stop_grace_period",
                        "stop_signal", "user", "working_dir", "deploy", "profiles", "networks", "labels",
                        "init", "logging", "mem_limit", "cpus", "read_only", "tmpfs"}
HEALTHCHECK_COMPOSE_KEYS = {"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"}
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_uses_only_documented_keys(compose):
    assert {k for k in compose if not k.startswith("x-")} <= COMPOSE_KEYS
    for name, service in compose["services"].items():
        assert set(service) <= COMPOSE_SERVICE_KEYS, (name, set(service) - COMPOSE_SERVICE_KEYS)
        assert set(service.get("healthcheck", {})) <= HEALTHCHECK_COMPOSE_KEYS
        for dep in service.get("depends_on", {}).values():
            assert dep["condition"] in DEPENDS_CONDITIONS
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"]


def test_compose_has_redis_noeviction_appendonly_one_shot_migrations_and_healthchecks(compose):
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "web", "worker", "beat", "flower"} <= set(services)
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--maxmemory-policy noeviction" in redis_cmd and "--appendonly yes" in redis_cmd
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "worker", "beat", "flower"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    for name in ("postgres", "redis", "web", "worker", "flower"):
        assert services[name]["healthcheck"]["test"], name


def compose_commands(compose) -> dict[str, str]:
    names = {"release": "migrate", "web": "web", "worker": "worker", "compute": "compute", "beat": "beat",
             "flower": "flower"}
    commands = {}
    for process, service in names.items():
        argv = compose["services"][service]["command"]
        assert argv[:2] == ["bash", "-c"], argv
        commands[process] = argv[2].replace("$$", "$")  # compose's escape of a literal $
    return commands


def test_every_platform_runs_the_procfiles_command_for_each_process(render, compose):
    expected = {name: squash(command) for name, command in PROCFILE.items()}
    assert {n: squash(c) for n, c in render_commands(render).items()} == expected
    assert {n: squash(c) for n, c in compose_commands(compose).items()} == expected
    # The image's default command is the web line; Flower's own-app Procfile is the flower
    # line on the platform's $PORT (Heroku and Dokku route HTTP to `web` only).
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert squash(PROCFILE["web"]).replace('"', '\\"') in squash(dockerfile)
    flower_app = procfile(ROOT / "deploy" / "flower")
    assert list(flower_app) == ["web"]
    # (on every interface: the platform's router is another host)
    assert squash(flower_app["web"]) == squash(PROCFILE["flower"]).replace("${FLOWER_PORT:-5555}", "$PORT").replace(
        "${FLOWER_ADDRESS:-127.0.0.1}", "0.0.0.0")


# --- Dockerfile: https://docs.docker.com/reference/dockerfile/
def test_dockerfile_installs_the_pinned_requirements_then_the_package_and_runs_as_non_root():
    text = "\n".join(line for line in (ROOT / "Dockerfile").read_text().splitlines()
                     if not line.lstrip().startswith("#"))
    lines = [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()]
    instructions = [line.split()[0] for line in lines if line.split()[0].isupper()]
    assert set(instructions) <= {"FROM", "ENV", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "CMD", "ARG", "LABEL"}
    assert lines[0] == "FROM python:3.11-slim"
    text = "\n".join(lines)
    requirements = text.index("pip install -r requirements.txt")
    package = text.index("pip install --no-deps .")
    assert requirements < package
    assert not re.search(r"\[(dev|test|bench)", text), "no dev or test tools in the image"
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "var"} <= set(ignored)
