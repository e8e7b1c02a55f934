"""REDIS_URL is parsed in one place and handed to each Redis user in its own spelling."""
from __future__ import annotations

import pytest
from limits.storage import RedisSentinelStorage, RedisStorage

from pipeline.adapters import redisurl
from pipeline.config import Config, ConfigError
from pipeline.worker.celery_app import celery_settings

SENTINEL = "sentinel://:s3cret@h1:26379,h2:26380,h3/2?master_name=mymaster"


def test_a_sentinel_url_names_its_sentinels_primary_database_and_password():
    found = redisurl.parse(SENTINEL)
    assert found == redisurl.SentinelURL((("h1", 26379), ("h2", 26380), ("h3", 26379)), "mymaster", 2, None, "s3cret")


def test_a_plain_url_has_no_sentinel_parts():
    assert redisurl.parse("redis://127.0.0.1:6379/0") is None
    assert redisurl.broker_url("rediss://h:6380/1") == "rediss://h:6380/1"
    assert redisurl.broker_transport_options("redis://h/0") == {}


@pytest.mark.parametrize("url, why", [
    ("sentinel://h1:26379,h2:26379/0", "master_name"),
    ("sentinel://h1:26379/0?master_name=", "master_name"),
    ("sentinel:///0?master_name=m", "at least one sentinel"),
    ("sentinel://h1:port/0?master_name=m", "port is a number"),
    ("sentinel://h1:26379/zero?master_name=m", "database"),
    ("http://h1/0", "must start with"),
])
def test_a_bad_url_says_what_is_wrong(url, why):
    with pytest.raises(ValueError, match=why):
        redisurl.parse(url)


def test_a_sentinel_url_without_a_master_name_stops_the_start_naming_the_variable():
    with pytest.raises(ConfigError, match="REDIS_URL.*master_name") as caught:
        Config.from_env({"REDIS_URL": "sentinel://:pw@h1:26379/0"})
    assert "pw" not in str(caught.value)


def test_kombu_gets_one_sentinel_url_per_sentinel_and_the_master_name_as_an_option():
    assert redisurl.broker_url(SENTINEL) == (
        "sentinel://:s3cret@h1:26379/2;sentinel://:s3cret@h2:26380/2;sentinel://:s3cret@h3:26379/2")
    options = redisurl.broker_transport_options(SENTINEL)
    assert options["master_name"] == "mymaster" and options["sentinel_kwargs"]["password"] == "s3cret"


def test_celery_uses_genlines_sentinel_transport_for_a_sentinel_url():
    settings = celery_settings(Config.from_env({"REDIS_URL": SENTINEL}))
    assert settings["broker_transport"] == "pipeline.adapters.broker:SentinelTransport"
    assert settings["broker_transport_options"]["master_name"] == "mymaster"
    assert settings["broker_transport_options"]["visibility_timeout"] > 0
    assert settings["redbeat_redis_url"].startswith("redis-sentinel://")
    options = settings["redbeat_redis_options"]
    assert (options["sentinels"], options["service_name"], options["db"]) == (
        [("h1", 26379), ("h2", 26380), ("h3", 26379)], "mymaster", 2)
    assert options["socket_timeout"] == 5 and options["password"] == "s3cret"


def test_kombu_reads_the_sentinel_scheme_as_genlines_transport_after_a_switch():
    # kombu re-reads the scheme when it moves to the next sentinel URL (Connection.switch).
    from kombu.transport import resolve_transport

    from pipeline.adapters import broker
    assert resolve_transport("sentinel") is broker.SentinelTransport


def test_limits_gets_its_own_sentinel_uri_and_reads_from_the_primary():
    assert redisurl.limits_uri(SENTINEL) == "redis+sentinel://:s3cret@h1:26379,h2:26380,h3:26379/mymaster"
    storage = redisurl.limits_storage(SENTINEL, socket_timeout=1)
    assert isinstance(storage, RedisSentinelStorage) and storage.service_name == "mymaster"
    assert storage.use_replicas is False
    assert type(redisurl.limits_storage("redis://127.0.0.1:1/0")) is RedisStorage


def test_a_plain_url_gives_a_plain_client_and_a_sentinel_url_a_managed_one():
    from redis.sentinel import SentinelConnectionPool
    assert not isinstance(redisurl.client("redis://127.0.0.1:1/0").connection_pool, SentinelConnectionPool)
    pool = redisurl.client(SENTINEL, socket_timeout=2).connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster"
    assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["password"] == "s3cret"
