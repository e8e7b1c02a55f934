"""Config is read once from the environment; a bad value names its variable."""
from __future__ import annotations

import pytest

from pipeline.config import Config, ConfigError


def test_defaults_work_with_an_empty_environment(tmp_path):
    cfg = Config.from_env({"GENLINE_VAR_DIR": str(tmp_path)})
    assert cfg.database_url.startswith("sqlite:///") and cfg.database_url.endswith("genline.db")
    assert cfg.storage_url.startswith("file://")
    assert (cfg.default_timeout_s, cfg.default_deadline_s, cfg.default_max_attempts) == (60, 120, 2)
    assert cfg.allow_simulate is False and cfg.demo is False


def test_postgres_urls_as_paas_set_them_are_accepted():
    cfg = Config.from_env({"DATABASE_URL": "postgres://u:p@db:5432/app"})
    assert cfg.database_url == "postgresql+psycopg2://u:p@db:5432/app"


@pytest.mark.parametrize("name, value", [
    ("GENLINE_MAX_PIXELS", "lots"),
    ("GENLINE_DEFAULT_TIMEOUT_S", "-1"),
    ("GENLINE_ALLOW_SIMULATE", "maybe"),
    ("GENLINE_API_KEYS", "no-colon-here"),
    ("STORAGE_URL", "ftp://somewhere"),
    ("REDIS_URL", "localhost:6379"),
])
def test_a_bad_value_stops_the_start_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: value})


def test_a_default_above_its_cap_is_refused():
    with pytest.raises(ConfigError, match="GENLINE_DEFAULT_DEADLINE_S"):
        Config.from_env({"GENLINE_DEFAULT_DEADLINE_S": "500", "GENLINE_MAX_DEADLINE_S": "100"})


def test_production_requires_a_secret_key():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Config.from_env({"GENLINE_PRODUCTION": "1"})


def test_static_api_keys_map_keys_to_tenants():
    cfg = Config.from_env({"GENLINE_API_KEYS": "acme:k1, beta:k2"})
    assert cfg.api_keys == {"k1": "acme", "k2": "beta"}
