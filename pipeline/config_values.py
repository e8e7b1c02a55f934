"""Pure helpers of the settings (``pipeline.config``): value checks and ``var/dev.env``."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


class ConfigError(ValueError):
    """A variable of the environment holds a value genline cannot use."""


PLACEHOLDER_MARKERS = ("change-me", "changeme", "change_me", "replace-me", "example", "placeholder")
"""Words of the values a template ships (deploy/env.example); production refuses them."""

MIN_SECRET_KEY_CHARS = 32
"""A SECRET_KEY signs output URLs and read tokens: 32 characters at least (``openssl rand -hex 32`` gives 64)."""


def secret_key_problem(secret: str) -> str | None:
    """What is wrong with ``secret`` as a production SECRET_KEY, or None."""
    lowered = secret.lower()
    if any(marker in lowered for marker in PLACEHOLDER_MARKERS):
        return "is the placeholder of deploy/env.example; set a random value (openssl rand -hex 32)"
    if len(secret) < MIN_SECRET_KEY_CHARS or len(set(secret)) < 8:
        return (f"is too weak ({len(secret)} characters, {len(set(secret))} distinct); use at least "
                f"{MIN_SECRET_KEY_CHARS} random characters (openssl rand -hex 32)")
    return None


def split_list(raw: str) -> tuple[str, ...]:
    """``a, b,,c`` -> ``("a", "b", "c")``."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def parse_api_keys(raw: tuple[str, ...], name: str = "GENLINE_API_KEYS") -> dict[str, str]:
    """``tenant:key,tenant:key`` -> {key: tenant}."""
    keys = {}
    for item in raw:
        tenant, sep, key = item.partition(":")
        if not sep or not tenant or not key:
            raise ConfigError(f"{name} entries must look like tenant:key, got {item!r}")
        keys[key] = tenant
    return keys


def fix_database_url(url: str) -> str:
    """Accept ``postgres://`` as PaaS set it, and name the driver genline ships (psycopg2)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


def redacted(url: str) -> str:
    """``url`` without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"


def dev_env_defaults(env: Mapping[str, str]) -> dict[str, str]:
    """Values from the ``var/dev.env`` that `genline dev` writes, for variables ``env`` leaves unset.

    So the CLI, or a worker started by hand, beside `make dev` talks to the same
    database, Redis, storage and keys. The file is ``$GENLINE_DEV_ENV`` (``off``
    ignores it), else ``$GENLINE_VAR_DIR/dev.env``, else ``./var/dev.env``. It is
    ignored by a process whose DATABASE_URL names another database: that process
    (a test's, the bench's, a platform's) belongs to another stack.
    """
    choice = (env.get("GENLINE_DEV_ENV") or "").strip()
    if choice.lower() in ("0", "off", "no", "false"):
        return {}
    path = Path(choice) if choice else Path(env.get("GENLINE_VAR_DIR") or "var") / "dev.env"
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    values = {}
    for line in lines:
        name, sep, value = line.partition("=")
        if sep and name.strip() and not name.lstrip().startswith("#"):
            values[name.strip()] = value.strip()
    own_db = env.get("DATABASE_URL")
    if own_db and fix_database_url(own_db) != fix_database_url(values.get("DATABASE_URL", "")):
        return {}
    return {name: value for name, value in values.items() if not env.get(name)}
