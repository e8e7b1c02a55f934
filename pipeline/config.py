"""Configuration: one class read from the environment, parsed once.

Every variable is optional in development. A bad value stops the start with the
variable's name in the message (``ConfigError``), never later in a request.
"""
from __future__ import annotations

import os
import re
import secrets
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import limits


class ConfigError(ValueError):
    """A variable of the environment holds a value genline cannot use."""


def _int(env, name, default, minimum=0):
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env, name, default, minimum=0.0):
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(env, name, default=False):
    raw = env.get(name)
    if raw in (None, ""):
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1/0, true/false, yes/no or on/off, got {raw!r}")


def _rate(env, name, default):
    """A Flask-Limiter rate like ``60/minute`` (or ``5/second;100/hour``)."""
    raw = env.get(name) or default
    try:
        parsed = limits.parse_many(raw)
    except ValueError:
        parsed = []
    if not parsed or any(item.amount < 1 for item in parsed):
        raise ConfigError(f"{name} must be a rate like 60/minute or 5/second;100/hour, got {raw!r}")
    return raw


def _optional_rate(env, name):
    """Like ``_rate``, but unset means no limit (None)."""
    return _rate(env, name, None) if env.get(name) else None


def _list(env, name):
    raw = env.get(name) or ""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _webhook_secret(env) -> str:
    """GENLINE_WEBHOOK_SECRET in the Standard Webhooks form ``whsec_<base64>``."""
    import base64
    import binascii
    raw = (env.get("GENLINE_WEBHOOK_SECRET") or "").strip()
    if raw:
        try:
            if len(base64.b64decode(raw.removeprefix("whsec_"), validate=True)) < 16:
                raise ValueError
        except (binascii.Error, ValueError):
            raise ConfigError("GENLINE_WEBHOOK_SECRET must look like whsec_<base64 of at least 16 bytes>") from None
    return raw


def dev_env_defaults(env) -> dict:
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


DIFFUSERS_DEVICES = ("auto", "cuda", "mps", "cpu")
DIFFUSERS_DTYPES = ("auto", "float32", "float16", "bfloat16")


def _choice(env, name, default, choices, pattern=None):
    raw = (env.get(name) or default).strip().lower()
    if raw in choices or (pattern and re.fullmatch(pattern, raw)):
        return raw
    raise ConfigError(f"{name} must be one of {', '.join(choices)}{' (or cuda:N)' if pattern else ''}, got {raw!r}")


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


def _default_providers(env, production: bool) -> tuple[str, ...]:
    """GENLINE_DEFAULT_PROVIDER: the provider (or fail-over list) of a job that names none."""
    from pipeline.adapters.providers import PROVIDER_NAMES
    names = _list(env, "GENLINE_DEFAULT_PROVIDER")
    unknown = [name for name in names if name not in PROVIDER_NAMES]
    if unknown:
        raise ConfigError(f"GENLINE_DEFAULT_PROVIDER names an unknown provider {unknown[0]!r}; "
                          f"known: {', '.join(PROVIDER_NAMES)}")
    if names:
        return names
    if production:
        raise ConfigError("GENLINE_DEFAULT_PROVIDER is not set: in production the default would be 'local', "
                          "the placeholder that draws shapes; set GENLINE_DEFAULT_PROVIDER=openai (or http, "
                          "a comma list to fail over, or local to choose the placeholder on purpose)")
    return ("local",)


def _redis_url(env) -> str:
    from pipeline.adapters.redis_tls import ssl_options
    url = env.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {_redacted(url)!r}")
    cert_reqs = (env.get("GENLINE_REDIS_SSL_CERT_REQS") or "").strip()
    if cert_reqs and url.startswith("rediss://") and "ssl_cert_reqs=" not in url:
        # A platform owns REDIS_URL (Heroku refuses to let it be edited), so the
        # query a self-signed certificate needs can come from here instead.
        url += ("&" if "?" in url else "?") + f"ssl_cert_reqs={cert_reqs}"
    try:
        ssl_options(url)
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL: {exc} (or GENLINE_REDIS_SSL_CERT_REQS)") from None
    return url


def _redacted(url: str) -> str:
    """``url`` without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"


def fix_database_url(url: str) -> str:
    """Accept ``postgres://`` as PaaS set it, and name the driver genline ships (psycopg2)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


def parse_api_keys(raw: tuple[str, ...], name="GENLINE_API_KEYS") -> dict[str, str]:
    """``tenant:key,tenant:key`` -> {key: tenant}."""
    keys = {}
    for item in raw:
        tenant, sep, key = item.partition(":")
        if not sep or not tenant or not key:
            raise ConfigError(f"{name} entries must look like tenant:key, got {item!r}")
        keys[key] = tenant
    return keys


def _storage_url(env, var_dir: Path) -> str:
    url = env.get("STORAGE_URL") or (var_dir / "outputs").resolve().as_uri()
    if not (url.startswith("file://") or url.startswith("s3://")):
        raise ConfigError(f"STORAGE_URL must start with s3:// or file://, got {url!r}")
    return url


def _public_url(env, production: bool) -> tuple[str, bool]:
    """GENLINE_PUBLIC_URL (the base of job and output links) and whether it was set.

    Unset, links follow each request's Host header, which a client controls, so
    production requires it.
    """
    raw = (env.get("GENLINE_PUBLIC_URL") or "").strip().rstrip("/")
    if not raw:
        if production:
            raise ConfigError("GENLINE_PUBLIC_URL is required when GENLINE_PRODUCTION=1 "
                              "(links are built from it, never from the request's Host header)")
        return "http://127.0.0.1:8000", False
    if not raw.startswith(("http://", "https://")) or "://" not in raw or not raw.split("://", 1)[1]:
        raise ConfigError(f"GENLINE_PUBLIC_URL must be an http(s) URL like https://genline.example.com, got {raw!r}")
    return raw, True


@dataclass(frozen=True)
class Config:
    """Everything genline reads from its environment (DESIGN §9)."""

    database_url: str
    redis_url: str
    storage_url: str
    s3_endpoint_url: str | None
    secret_key: str
    api_keys: dict = field(default_factory=dict)
    production: bool = False
    default_providers: tuple = ("local",)
    allow_simulate: bool = False
    default_timeout_s: float = 60.0
    default_deadline_s: float = 120.0
    default_max_attempts: int = 2
    max_timeout_s: float = 600.0
    max_deadline_s: float = 3600.0
    max_max_attempts: int = 5
    webhook_allow_private: bool = False
    webhook_secret: str = ""
    webhook_retry_base_s: float = 10.0
    webhook_max_attempts: int = 8
    webhook_timeout_s: float = 10.0
    sse_heartbeat_s: float = 15.0
    openai_api_key: str | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    http_provider_url: str | None = None
    http_provider_token: str | None = None
    diffusers_model: str | None = None
    diffusers_device: str = "auto"
    diffusers_dtype: str = "auto"
    diffusers_load_timeout_s: float = 900.0
    cors_origins: tuple = ()
    demo: bool = False
    demo_rate_limit: str = "8/minute"
    rate_limit: str = "60/minute"
    tenant_concurrency: int = 4
    tenant_throttle: str | None = None
    replay_rate: str = "5/second"
    max_body_bytes: int = 1024 * 1024
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 16_000_000
    retention_days: float = 7.0
    lease_s: float = 8.0
    reaper_interval_s: float = 2.0
    max_lost: int = 3
    worker_soft_shutdown_s: float = 25.0
    url_ttl_s: int = 3600
    token_ttl_s: int = 86400
    metrics_public: bool = False
    metrics_token: str | None = None
    var_dir: str = "var"
    public_url: str = "http://127.0.0.1:8000"
    public_url_set: bool = False
    # The anonymous demo tenant's own budget caps: a visitor must not hold a worker slot for an hour.
    demo_max_timeout_s: float = 30.0
    demo_max_deadline_s: float = 120.0
    demo_max_attempts: int = 2
    demo_allow_hang: bool = False

    @classmethod
    def from_env(cls, env=None) -> Config:
        """Read and check every variable; raise ConfigError naming a bad one."""
        if env is None:
            env = dict(os.environ)
            env.update(dev_env_defaults(env))
        var_dir = Path(env.get("GENLINE_VAR_DIR") or "var")
        production = _bool(env, "GENLINE_PRODUCTION", False)
        secret = env.get("SECRET_KEY")
        if not secret:
            if production:
                raise ConfigError("SECRET_KEY is required when GENLINE_PRODUCTION=1 (openssl rand -hex 32)")
            secret = secrets.token_hex(32)
        elif production and secret_key_problem(secret):
            raise ConfigError(f"SECRET_KEY {secret_key_problem(secret)}")
        database_url = fix_database_url(
            env.get("DATABASE_URL") or f"sqlite:///{(var_dir / 'genline.db').resolve()}"
        )
        if "://" not in database_url:
            raise ConfigError(f"DATABASE_URL must be a URL, got {database_url!r}")
        public_url, public_url_set = _public_url(env, production)
        cfg = cls(
            database_url=database_url,
            redis_url=_redis_url(env),
            production=production,
            default_providers=_default_providers(env, production),
            storage_url=_storage_url(env, var_dir),
            s3_endpoint_url=env.get("S3_ENDPOINT_URL") or None,
            secret_key=secret,
            api_keys=parse_api_keys(_list(env, "GENLINE_API_KEYS")),
            allow_simulate=_bool(env, "GENLINE_ALLOW_SIMULATE"),
            default_timeout_s=_float(env, "GENLINE_DEFAULT_TIMEOUT_S", 60.0, 0.1),
            default_deadline_s=_float(env, "GENLINE_DEFAULT_DEADLINE_S", 120.0, 0.1),
            default_max_attempts=_int(env, "GENLINE_DEFAULT_MAX_ATTEMPTS", 2, 1),
            max_timeout_s=_float(env, "GENLINE_MAX_TIMEOUT_S", 600.0, 0.1),
            max_deadline_s=_float(env, "GENLINE_MAX_DEADLINE_S", 3600.0, 0.1),
            max_max_attempts=_int(env, "GENLINE_MAX_MAX_ATTEMPTS", 5, 1),
            webhook_allow_private=_bool(env, "GENLINE_WEBHOOK_ALLOW_PRIVATE"),
            webhook_secret=_webhook_secret(env),
            webhook_retry_base_s=_float(env, "GENLINE_WEBHOOK_RETRY_BASE_S", 10.0, 0.01),
            webhook_max_attempts=_int(env, "GENLINE_WEBHOOK_MAX_ATTEMPTS", 8, 1),
            webhook_timeout_s=_float(env, "GENLINE_WEBHOOK_TIMEOUT_S", 10.0, 0.1),
            sse_heartbeat_s=_float(env, "GENLINE_SSE_HEARTBEAT_S", 15.0, 0.05),
            openai_api_key=env.get("OPENAI_API_KEY") or None,
            openai_base_url=(env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/"),
            http_provider_url=env.get("GENLINE_HTTP_PROVIDER_URL") or None,
            http_provider_token=env.get("GENLINE_HTTP_PROVIDER_TOKEN") or None,
            diffusers_model=(env.get("GENLINE_DIFFUSERS_MODEL") or "").strip() or None,
            diffusers_device=_choice(env, "GENLINE_DIFFUSERS_DEVICE", "auto", DIFFUSERS_DEVICES, r"cuda:[0-9]+"),
            diffusers_dtype=_choice(env, "GENLINE_DIFFUSERS_DTYPE", "auto", DIFFUSERS_DTYPES),
            diffusers_load_timeout_s=_float(env, "GENLINE_DIFFUSERS_LOAD_TIMEOUT_S", 900.0, 1.0),
            cors_origins=_list(env, "GENLINE_CORS_ORIGINS"),
            demo=_bool(env, "GENLINE_DEMO"),
            demo_rate_limit=_rate(env, "GENLINE_DEMO_RATE_LIMIT", "8/minute"),
            rate_limit=_rate(env, "GENLINE_RATE_LIMIT", "60/minute"),
            tenant_concurrency=_int(env, "GENLINE_TENANT_CONCURRENCY", 4, 1),
            tenant_throttle=_optional_rate(env, "GENLINE_TENANT_THROTTLE"),
            replay_rate=_rate(env, "GENLINE_REPLAY_RATE", "5/second"),
            max_body_bytes=_int(env, "GENLINE_MAX_BODY_BYTES", 1024 * 1024, 1024),
            max_upload_bytes=_int(env, "GENLINE_MAX_UPLOAD_BYTES", 20 * 1024 * 1024, 1024),
            max_pixels=_int(env, "GENLINE_MAX_PIXELS", 16_000_000, 1),
            retention_days=_float(env, "GENLINE_RETENTION_DAYS", 7.0, 0.0),
            lease_s=_float(env, "GENLINE_LEASE_S", 8.0, 1.0),
            reaper_interval_s=_float(env, "GENLINE_REAPER_INTERVAL_S", 2.0, 0.2),
            max_lost=_int(env, "GENLINE_MAX_LOST", 3, 1),
            worker_soft_shutdown_s=_float(env, "GENLINE_WORKER_SOFT_SHUTDOWN_S", 25.0, 0.0),
            url_ttl_s=_int(env, "GENLINE_URL_TTL_S", 3600, 1),
            token_ttl_s=_int(env, "GENLINE_TOKEN_TTL_S", 86400, 1),
            metrics_public=_bool(env, "GENLINE_METRICS_PUBLIC"),
            metrics_token=env.get("GENLINE_METRICS_TOKEN") or None,
            var_dir=str(var_dir),
            public_url=public_url,
            public_url_set=public_url_set,
            demo_max_timeout_s=_float(env, "GENLINE_DEMO_MAX_TIMEOUT_S", 30.0, 0.1),
            demo_max_deadline_s=_float(env, "GENLINE_DEMO_MAX_DEADLINE_S", 120.0, 0.1),
            demo_max_attempts=_int(env, "GENLINE_DEMO_MAX_ATTEMPTS", 2, 1),
            demo_allow_hang=_bool(env, "GENLINE_DEMO_ALLOW_HANG"),
        )
        cfg.check()
        return cfg

    def check(self) -> None:
        """Cross-field checks: defaults must sit within their caps."""
        pairs = [
            ("GENLINE_DEFAULT_TIMEOUT_S", self.default_timeout_s, "GENLINE_MAX_TIMEOUT_S", self.max_timeout_s),
            ("GENLINE_DEFAULT_DEADLINE_S", self.default_deadline_s, "GENLINE_MAX_DEADLINE_S", self.max_deadline_s),
            ("GENLINE_DEFAULT_MAX_ATTEMPTS", self.default_max_attempts, "GENLINE_MAX_MAX_ATTEMPTS", self.max_max_attempts),
        ]
        for name, value, cap_name, cap in pairs:
            if value > cap:
                raise ConfigError(f"{name}={value} is above {cap_name}={cap}")

    def refusals(self) -> list[str]:
        """Why production must not run with this config (empty when it may).

        ``from_env`` raises the first of these at start; ``/readyz`` reports them
        for a config built another way, so a refused config is never ready.
        """
        if not self.production:
            return []
        problem = secret_key_problem(self.secret_key)
        return [f"SECRET_KEY {problem}"] if problem else []

    def replace(self, **changes) -> Config:
        """A copy with some fields changed (tests and the dev runner use it)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Config(**values)


def from_env_or_exit(env=None) -> Config:
    """``Config.from_env`` at a process's start: a bad variable ends it with one line naming it.

    Web (gunicorn's config file and the app factory), worker, beat, Flower and
    ``release`` all start here, so a refused configuration stops every one of
    them with the same message, exit status 2 and no traceback.
    """
    try:
        return Config.from_env(env)
    except ConfigError as exc:
        print(f"genline: configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
