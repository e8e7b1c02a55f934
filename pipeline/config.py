"""Configuration: one settings class read from the environment, parsed once.

Every variable is optional in development. A bad value stops the start with the
variable's name in the message (``ConfigError``), never later in a request.
Each field carries its variable's name, its one default and its description;
``docs/configuration.md`` is generated from them (``genline config docs``).
"""
from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Annotated, Any

import limits
from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from pipeline.adapters import redisurl
from pipeline.adapters.redis_tls import ssl_options
from pipeline.config_values import (  # noqa: F401 - part of this module's public surface
    MIN_SECRET_KEY_CHARS,
    PLACEHOLDER_MARKERS,
    ConfigError,
    dev_env_defaults,
    fix_database_url,
    parse_api_keys,
    redacted,
    secret_key_problem,
    split_list,
)
from pipeline.core.providers import PROVIDER_NAMES

DIFFUSERS_DEVICES = ("auto", "cuda", "mps", "cpu")
DIFFUSERS_DTYPES = ("auto", "float32", "float16", "bfloat16")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")

CommaList = Annotated[tuple[str, ...], BeforeValidator(lambda raw: split_list(raw) if isinstance(raw, str) else raw)]
"""``a, b,c`` -> ``("a", "b", "c")`` (blank items dropped)."""


def setting(name: str, default: Any = None, description: str = "", *, shown: str | None = None,
            kind: str | None = None, **constraints: Any) -> Any:
    """A field read from the variable ``name``: its one default, its description for the docs.

    ``shown`` is the default as the docs print it when the value is computed
    (from GENLINE_VAR_DIR, or at random); ``kind`` names a type the annotation
    does not (a rate, a URL).
    """
    extra: dict[str, Any] = {key: value for key, value in (("doc_default", shown), ("doc_type", kind)) if value}
    return Field(default, validation_alias=name, description=description, json_schema_extra=extra or None,
                 **constraints)


def variable(info: ValidationInfo) -> str:
    """The environment variable of the field being validated."""
    return str(Config.model_fields[info.field_name or ""].validation_alias)


class DevEnvSource(PydanticBaseSettingsSource):
    """``var/dev.env`` as `genline dev` writes it, for the variables the environment leaves unset."""

    def get_field_value(self, field, field_name):  # noqa: ANN001 - the base class's signature
        return None, field_name, False  # unused: __call__ reads the file once

    def __call__(self) -> dict[str, Any]:
        return dict(dev_env_defaults(os.environ))


class Config(BaseSettings):
    """Everything genline reads from its environment (DESIGN §9)."""

    model_config = SettingsConfigDict(case_sensitive=True, env_ignore_empty=True, enable_decoding=False,
                                      frozen=True, extra="ignore")

    # -- where things live (fields validated in this order: later defaults read earlier values) --
    var_dir: str = setting("GENLINE_VAR_DIR", "var", "Where the embedded defaults live: the SQLite file, outputs, "
                           "`make dev`'s Redis and keys.")
    production: bool = setting("GENLINE_PRODUCTION", False, "Refuse to start without a strong `SECRET_KEY`, without "
                               "`GENLINE_PUBLIC_URL`, or with the `local` placeholder as an unchosen default provider.")
    database_url: str = setting("DATABASE_URL", "", "SQLAlchemy URL; `postgres://` is accepted as PaaS set it.",
                                shown="SQLite file `$GENLINE_VAR_DIR/genline.db`", kind="URL", validate_default=True)
    redis_ssl_cert_reqs: str = setting("GENLINE_REDIS_SSL_CERT_REQS", "", "`none` (or `optional`) for a `rediss://` "
                                       "`REDIS_URL` without `ssl_cert_reqs` that a platform owns (Heroku Redis's "
                                       "self-signed certificate).")
    redis_url: str = setting("REDIS_URL", "redis://127.0.0.1:6379/0", "Broker, live events, rate-limit counters "
                             "and locks (`make dev`: an embedded Redis on 6390). Through Redis Sentinel: "
                             "`sentinel://host:26379,host:26379,host:26379/0?master_name=mymaster` "
                             "(docs/deployment.md).", kind="URL", validate_default=True)
    storage_url: str = setting("STORAGE_URL", "", "Where outputs go: `s3://bucket/prefix` or `file:///path`.",
                               shown="`file://` under `$GENLINE_VAR_DIR/outputs`", kind="URL", validate_default=True)
    s3_endpoint_url: str | None = setting("S3_ENDPOINT_URL", None, "S3-compatible endpoint (MinIO, R2, moto).",
                                          shown="AWS", kind="URL")
    secret_key: str = setting("SECRET_KEY", "", "Signs job tokens and output URLs; required with "
                              "`GENLINE_PRODUCTION=1` (`openssl rand -hex 32`).",
                              shown="random per process (`make dev` keeps one in `var/`)", validate_default=True)
    public_url: str = setting("GENLINE_PUBLIC_URL", "", "Base of every job and output link (API, webhooks, CLI), "
                              "never the request's `Host`; required with `GENLINE_PRODUCTION=1`.",
                              shown="the request's host (`http://127.0.0.1:8000` outside requests)", kind="URL",
                              validate_default=True)
    # -- the database link (docs/recovery.md#a-database-outage) --
    db_connect_timeout_s: int = setting("GENLINE_DB_CONNECT_TIMEOUT_S", 3, "How long opening a database connection "
                                        "may take before the request answers 503 (libpq `connect_timeout`, at "
                                        "least 2).", ge=2)
    db_pool_timeout_s: int = setting("GENLINE_DB_POOL_TIMEOUT_S", 10, "How long a request waits for a free "
                                     "connection of its process's pool before it answers 503: a burst (hundreds of "
                                     "event streams opened at once) queues within it, while on a dead link the "
                                     "pool's connections are freed within `GENLINE_DB_LINK_TIMEOUT_S`.", ge=1)
    db_link_timeout_s: int = setting("GENLINE_DB_LINK_TIMEOUT_S", 5, "How long a database connection may go "
                                     "unanswered before it is dropped (TCP keepalives and `tcp_user_timeout`): a "
                                     "request on a dead link answers 503 within about this; 0 leaves the OS's "
                                     "defaults (minutes to hours).", ge=0)
    db_server_timeouts: bool = setting("GENLINE_DB_SERVER_TIMEOUTS", True, "Ask Postgres, at each connection's "
                                       "start (`options`), to drop it after the same silence, so a backend whose "
                                       "client vanished releases its locks and slot (off for a pooler that refuses "
                                       "startup options, such as PgBouncer).")
    # -- jobs and their budgets --
    default_providers: CommaList = setting("GENLINE_DEFAULT_PROVIDER", (), "Provider (or comma list, to fail over) "
                                           f"of jobs that name none: {', '.join(PROVIDER_NAMES)}. Required in "
                                           "production (`local` must be chosen explicitly there).",
                                           shown="`local`", validate_default=True)
    api_keys: dict[str, str] = setting("GENLINE_API_KEYS", {}, "Static API keys, `tenant:key,tenant:key`.",
                                       shown="none (`make dev` makes a dev key)", kind="comma list of tenant:key")
    allow_simulate: bool = setting("GENLINE_ALLOW_SIMULATE", False, "Allow `params.simulate` (latency and failures "
                                   "on demand, for tests and demos).")
    default_timeout_s: float = setting("GENLINE_DEFAULT_TIMEOUT_S", 60.0, "Budget default: one attempt's time.", ge=0.1)
    default_deadline_s: float = setting("GENLINE_DEFAULT_DEADLINE_S", 120.0, "Budget default: the whole job's time.",
                                        ge=0.1)
    default_max_attempts: int = setting("GENLINE_DEFAULT_MAX_ATTEMPTS", 2, "Budget default: attempts.", ge=1)
    max_timeout_s: float = setting("GENLINE_MAX_TIMEOUT_S", 600.0, "Budget cap: one attempt's time.", ge=0.1)
    max_deadline_s: float = setting("GENLINE_MAX_DEADLINE_S", 3600.0, "Budget cap: the whole job's time.", ge=0.1)
    max_max_attempts: int = setting("GENLINE_MAX_MAX_ATTEMPTS", 5, "Budget cap: attempts.", ge=1)
    # -- webhooks and events --
    webhook_allow_private: bool = setting("GENLINE_WEBHOOK_ALLOW_PRIVATE", False, "Allow webhooks to private "
                                          "addresses.")
    webhook_secret: str = setting("GENLINE_WEBHOOK_SECRET", "", "Webhook signing secret `whsec_<base64>` (a "
                                  "tenant's own secret overrides it).",
                              shown="derived from `SECRET_KEY` (`genline webhooks secret` shows it)")
    webhook_retry_base_s: float = setting("GENLINE_WEBHOOK_RETRY_BASE_S", 10.0, "First webhook retry delay (then ×4 "
                                          "each time).", ge=0.01)
    webhook_max_attempts: int = setting("GENLINE_WEBHOOK_MAX_ATTEMPTS", 8, "Webhook deliveries in all (8 ≈ 15 h).",
                                        ge=1)
    webhook_timeout_s: float = setting("GENLINE_WEBHOOK_TIMEOUT_S", 10.0, "How long one webhook POST may take.", ge=0.1)
    sse_heartbeat_s: float = setting("GENLINE_SSE_HEARTBEAT_S", 15.0, "Heartbeat comment interval of quiet event "
                                     "streams.", ge=0.05)
    # -- providers --
    openai_api_key: str | None = setting("OPENAI_API_KEY", None, "The `openai` provider's key.")
    openai_base_url: str = setting("OPENAI_BASE_URL", "https://api.openai.com/v1", "The `openai` provider's API "
                                   "base.", kind="URL")
    http_provider_url: str | None = setting("GENLINE_HTTP_PROVIDER_URL", None, "The `http` provider's endpoint.",
                                            kind="URL")
    http_provider_token: str | None = setting("GENLINE_HTTP_PROVIDER_TOKEN", None, "The `http` provider's bearer "
                                              "token.")
    diffusers_model: str | None = setting("GENLINE_DIFFUSERS_MODEL", None, "The `diffusers` provider's model: a hub "
                                          "id or a `save_pretrained` directory (docs/diffusers.md).")
    diffusers_device: str = setting("GENLINE_DIFFUSERS_DEVICE", "auto", "Device of the `diffusers` provider: "
                                    f"{', '.join(DIFFUSERS_DEVICES)} or cuda:N.", kind="choice")
    diffusers_dtype: str = setting("GENLINE_DIFFUSERS_DTYPE", "auto", "Precision of the `diffusers` provider: "
                                   f"{', '.join(DIFFUSERS_DTYPES)}.", kind="choice")
    diffusers_load_timeout_s: float = setting("GENLINE_DIFFUSERS_LOAD_TIMEOUT_S", 900.0, "How long loading the "
                                              "`diffusers` model may take.", ge=1.0)
    # -- the web --
    cors_origins: CommaList = setting("GENLINE_CORS_ORIGINS", (), "Browser origins allowed to read job URLs with "
                                      "their token (comma list).", shown="none")
    demo: bool = setting("GENLINE_DEMO", False, "Serve the demo page (`make dev` turns it on).")
    demo_rate_limit: str = setting("GENLINE_DEMO_RATE_LIMIT", "8/minute", "The demo's submissions per client IP.",
                                   kind="rate")
    rate_limit: str = setting("GENLINE_RATE_LIMIT", "60/minute", "Submissions per API key (a key's `--rate-limit` "
                              "overrides).", kind="rate")
    tenant_concurrency: int = setting("GENLINE_TENANT_CONCURRENCY", 4, "Jobs of one tenant in `generate` at once (a "
                                      "key's `--concurrency` overrides).", ge=1)
    tenant_throttle: str | None = setting("GENLINE_TENANT_THROTTLE", None, "Generate starts per tenant over time "
                                          "(`10/minute`); excess jobs wait `queued`, never refused (a key's "
                                          "`--throttle` overrides; docs/incidents.md).", shown="none", kind="rate")
    replay_rate: str = setting("GENLINE_REPLAY_RATE", "5/second", "How fast replayed jobs re-enter the queues, all "
                               "replays together, behind live traffic (docs/incidents.md).", kind="rate")
    max_body_bytes: int = setting("GENLINE_MAX_BODY_BYTES", 1024 * 1024, "Largest request body.",
                                  shown="`1048576` (1 MiB)", ge=1024)
    max_upload_bytes: int = setting("GENLINE_MAX_UPLOAD_BYTES", 20 * 1024 * 1024, "Largest upload.",
                                    shown="`20971520` (20 MiB)", ge=1024)
    max_pixels: int = setting("GENLINE_MAX_PIXELS", 16_000_000, "Largest input image, in pixels.", ge=1)
    url_ttl_s: int = setting("GENLINE_URL_TTL_S", 3600, "Life of signed output URLs.", ge=1)
    token_ttl_s: int = setting("GENLINE_TOKEN_TTL_S", 86400, "Life of job read tokens.", ge=1)
    metrics_public: bool = setting("GENLINE_METRICS_PUBLIC", False, "Serve `/metrics` without a key.")
    metrics_token: str | None = setting("GENLINE_METRICS_TOKEN", None, "A bearer token for `/metrics` scrapers.")
    log_level: str = setting("GENLINE_LOG_LEVEL", "INFO", "Level of genline's key=value log lines: "
                             f"{', '.join(LOG_LEVELS)}.", kind="choice")
    # Observability (docs/observability.md)
    log_format: str = setting("GENLINE_LOG_FORMAT", "text", "Log lines as `key=value` text or one JSON object per "
                              "line (web, worker, beat).", kind="choice")
    metrics_tenant_labels: bool = setting("GENLINE_METRICS_TENANT_LABELS", False, "Add a `tenant` label to the job "
                                          "counters (mind the cardinality).")
    worker_metrics_port: int = setting("GENLINE_WORKER_METRICS_PORT", 0, "The port a worker serves its host's "
                                       "metrics on (0: none; the web's `/metrics` has them on one host).",
                                       ge=0, le=65535)
    # -- workers and beat --
    retention_days: float = setting("GENLINE_RETENTION_DAYS", 7.0, "How long jobs, events, prompts and outputs are "
                                    "kept.", ge=0.0)
    lease_s: float = setting("GENLINE_LEASE_S", 8.0, "How long a step's lease lasts without renewal (renewed every "
                             "lease/3).", ge=1.0)
    reaper_interval_s: float = setting("GENLINE_REAPER_INTERVAL_S", 2.0, "How often beat runs the reaper.", ge=0.2)
    max_lost: int = setting("GENLINE_MAX_LOST", 3, "Worker losses of one job before it fails with `internal_error`.",
                            ge=1)
    worker_soft_shutdown_s: float = setting("GENLINE_WORKER_SOFT_SHUTDOWN_S", 25.0, "On a cold shutdown, how long "
                                            "running tasks may finish before they are requeued.", ge=0.0)
    # -- the anonymous demo tenant's own budget caps: a visitor must not hold a worker slot for an hour --
    demo_max_timeout_s: float = setting("GENLINE_DEMO_MAX_TIMEOUT_S", 30.0, "Demo budget cap: one attempt's time.",
                                        ge=0.1)
    demo_max_deadline_s: float = setting("GENLINE_DEMO_MAX_DEADLINE_S", 120.0, "Demo budget cap: the whole job's "
                                         "time.", ge=0.1)
    demo_max_attempts: int = setting("GENLINE_DEMO_MAX_ATTEMPTS", 2, "Demo budget cap: attempts.", ge=1)
    demo_allow_hang: bool = setting("GENLINE_DEMO_ALLOW_HANG", False, "Let the demo simulate a hanging provider.")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):  # noqa: ANN001 - pydantic-settings' hook
        """The process's environment first, then ``var/dev.env`` for what it leaves unset."""
        return init_settings, env_settings, DevEnvSource(settings_cls)

    @classmethod
    def from_env(cls, env: dict | None = None) -> Config:
        """Read and check every variable of ``env`` (default: this process's); raise ConfigError naming a bad one."""
        try:
            return cls() if env is None else cls.model_validate(env)
        except ValidationError as exc:
            raise ConfigError("; ".join(_message(error) for error in exc.errors())) from None
        except SettingsError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def public_url_set(self) -> bool:
        """Whether GENLINE_PUBLIC_URL was given (else links follow each request's host)."""
        return "public_url" in self.model_fields_set

    def refusals(self) -> list[str]:
        """Why production must not run with this config (empty when it may).

        ``from_env`` raises the first of these at start; ``/readyz`` reports them
        for a config built another way, so a refused config is never ready.
        """
        if not self.production:
            return []
        problem = secret_key_problem(self.secret_key)
        return [f"SECRET_KEY {problem}"] if problem else []

    # -- checks of single values --

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        """A variable set to blanks counts as unset, as an empty one does."""
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if not (isinstance(value, str) and not value.strip())}
        return data

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, raw: str, info: ValidationInfo) -> str:
        var_dir = Path(info.data.get("var_dir", "var"))
        url = fix_database_url(raw or f"sqlite:///{(var_dir / 'genline.db').resolve()}")
        if "://" not in url:
            raise ValueError(f"DATABASE_URL must be a URL, got {url!r}")
        return url

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, url: str, info: ValidationInfo) -> str:
        try:
            redisurl.parse(url)
        except ValueError as exc:
            raise ValueError(f"REDIS_URL {exc}, got {redacted(url)!r}") from None
        cert_reqs = info.data.get("redis_ssl_cert_reqs", "").strip()
        if cert_reqs and url.startswith("rediss://") and "ssl_cert_reqs=" not in url:
            # A platform owns REDIS_URL (Heroku refuses to let it be edited), so the
            # query a self-signed certificate needs can come from here instead.
            url += ("&" if "?" in url else "?") + f"ssl_cert_reqs={cert_reqs}"
        try:
            ssl_options(url)
        except ValueError as exc:
            raise ValueError(f"REDIS_URL: {exc} (or GENLINE_REDIS_SSL_CERT_REQS)") from None
        return url

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, raw: str, info: ValidationInfo) -> str:
        url = raw or (Path(info.data.get("var_dir", "var")) / "outputs").resolve().as_uri()
        if not url.startswith(("file://", "s3://")):
            raise ValueError(f"STORAGE_URL must start with s3:// or file://, got {url!r}")
        return url

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, secret: str, info: ValidationInfo) -> str:
        production = info.data.get("production", False)
        if not secret:
            if production:
                raise ValueError("SECRET_KEY is required when GENLINE_PRODUCTION=1 (openssl rand -hex 32)")
            return secrets.token_hex(32)
        if production and secret_key_problem(secret):
            raise ValueError(f"SECRET_KEY {secret_key_problem(secret)}")
        return secret

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, raw: str, info: ValidationInfo) -> str:
        # Unset, links follow each request's Host header, which a client controls, so production requires it.
        url = raw.strip().rstrip("/")
        if not url:
            if info.data.get("production", False):
                raise ValueError("GENLINE_PUBLIC_URL is required when GENLINE_PRODUCTION=1 "
                                 "(links are built from it, never from the request's Host header)")
            return "http://127.0.0.1:8000"
        if not url.startswith(("http://", "https://")) or not url.split("://", 1)[1]:
            raise ValueError(f"GENLINE_PUBLIC_URL must be an http(s) URL like https://genline.example.com, "
                             f"got {url!r}")
        return url

    @field_validator("default_providers")
    @classmethod
    def _default_providers(cls, names: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        unknown = [name for name in names if name not in PROVIDER_NAMES]
        if unknown:
            raise ValueError(f"GENLINE_DEFAULT_PROVIDER names an unknown provider {unknown[0]!r}; "
                             f"known: {', '.join(PROVIDER_NAMES)}")
        if names:
            return names
        if info.data.get("production", False):
            raise ValueError("GENLINE_DEFAULT_PROVIDER is not set: in production the default would be 'local', "
                             "the placeholder that draws shapes; set GENLINE_DEFAULT_PROVIDER=openai (or http, "
                             "a comma list to fail over, or local to choose the placeholder on purpose)")
        return ("local",)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys(cls, raw: Any) -> Any:
        return parse_api_keys(split_list(raw)) if isinstance(raw, str) else raw

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, raw: str) -> str:
        """The Standard Webhooks form ``whsec_<base64>``."""
        secret = raw.strip()
        if secret:
            try:
                if len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) < 16:
                    raise ValueError
            except (binascii.Error, ValueError):
                raise ValueError("GENLINE_WEBHOOK_SECRET must look like whsec_<base64 of at least 16 bytes>") from None
        return secret

    @field_validator("openai_base_url")
    @classmethod
    def _no_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")

    @field_validator("diffusers_model")
    @classmethod
    def _stripped(cls, raw: str | None) -> str | None:
        return (raw or "").strip() or None

    @field_validator("diffusers_device", "diffusers_dtype", "log_level", "log_format")
    @classmethod
    def _choice(cls, raw: str, info: ValidationInfo) -> str:
        choices = {"diffusers_device": DIFFUSERS_DEVICES, "diffusers_dtype": DIFFUSERS_DTYPES,
                   "log_level": LOG_LEVELS, "log_format": LOG_FORMATS}[info.field_name or ""]
        value = raw.strip().upper() if info.field_name == "log_level" else raw.strip().lower()
        devices = info.field_name == "diffusers_device"
        if value in choices or (devices and re.fullmatch(r"cuda:[0-9]+", value)):
            return value
        raise ValueError(f"{variable(info)} must be one of {', '.join(choices)}{' (or cuda:N)' if devices else ''}, "
                         f"got {value!r}")

    @field_validator("demo_rate_limit", "rate_limit", "tenant_throttle", "replay_rate")
    @classmethod
    def _rate(cls, raw: str | None, info: ValidationInfo) -> str | None:
        """A Flask-Limiter rate like ``60/minute`` (or ``5/second;100/hour``)."""
        if raw is None:
            return None
        try:
            parsed = limits.parse_many(raw)
        except ValueError:
            parsed = []
        if not parsed or any(item.amount < 1 for item in parsed):
            raise ValueError(f"{variable(info)} must be a rate like 60/minute or 5/second;100/hour, got {raw!r}")
        return raw

    # -- checks across values --

    @model_validator(mode="after")
    def _defaults_within_caps(self) -> Config:
        pairs = [
            ("GENLINE_DEFAULT_TIMEOUT_S", self.default_timeout_s, "GENLINE_MAX_TIMEOUT_S", self.max_timeout_s),
            ("GENLINE_DEFAULT_DEADLINE_S", self.default_deadline_s, "GENLINE_MAX_DEADLINE_S", self.max_deadline_s),
            ("GENLINE_DEFAULT_MAX_ATTEMPTS", self.default_max_attempts, "GENLINE_MAX_MAX_ATTEMPTS",
             self.max_max_attempts),
        ]
        for name, value, cap_name, cap in pairs:
            if value > cap:
                raise ValueError(f"{name}={value} is above {cap_name}={cap}")
        return self


def _message(error: Any) -> str:
    """One pydantic error as a sentence naming the variable."""
    name = ".".join(str(part) for part in error["loc"])
    value = error.get("input")
    kind = error["type"]
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind in ("int_parsing", "int_from_float"):
        return f"{name} must be a whole number, got {value!r}"
    if kind == "float_parsing":
        return f"{name} must be a number, got {value!r}"
    if kind == "bool_parsing":
        return f"{name} must be 1/0, true/false, yes/no or on/off, got {value!r}"
    if kind == "greater_than_equal":
        return f"{name} must be at least {error['ctx']['ge']}, got {value}"
    return f"{name}: {error['msg']}, got {value!r}"


def from_env_or_exit(env: dict | None = None) -> Config:
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

