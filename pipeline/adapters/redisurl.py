"""``REDIS_URL`` read once, handed to every Redis user in the form it takes.

genline's Redis is either one server (``redis://``, ``rediss://``, ``unix://``)
or a primary found through Redis Sentinel:

    sentinel://[[user]:password@]host:port[,host:port…][/db]?master_name=NAME

Sentinel promotes a replica when the primary dies; every client here asks the
sentinels for the current primary whenever it (re)connects, so after a
failover the broker, live events, rate limits, locks and beat all reach the
new primary without a restart. The password (if any) is sent to the primary
and to the sentinels alike: ``limits`` cannot tell them apart, so give both
the same ``requirepass``.

Each library spells Sentinel its own way (kombu: ``sentinel://h1;sentinel://h2``
plus a ``master_name`` transport option; ``limits``: ``redis+sentinel://h1,h2/NAME``;
celery-redbeat: ``redis-sentinel://`` plus ``sentinels``/``service_name``
options); this module is the one place that knows them.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlsplit

import redis
from limits.storage import RedisSentinelStorage, RedisStorage
from redis.sentinel import Sentinel

SCHEMES = ("redis", "rediss", "unix", "sentinel")
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_TIMEOUT_S = 1.0
"""Socket timeouts of the questions to the sentinels: a dead sentinel costs this, then the next is asked."""


@dataclass(frozen=True)
class SentinelURL:
    """A parsed ``sentinel://`` URL: where the sentinels are and which primary they watch."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None

    def _auth(self) -> dict:
        return {k: v for k, v in (("username", self.username), ("password", self.password)) if v}

    def _userinfo(self) -> str:
        if not self.password and not self.username:
            return ""
        return f"{quote(self.username or '', safe='')}:{quote(self.password or '', safe='')}@"


def is_sentinel(url: str) -> bool:
    """True for a ``sentinel://`` URL."""
    return url.startswith("sentinel://")


def parse(url: str) -> SentinelURL | None:
    """The sentinel parts of ``url`` (None for a plain Redis URL); ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"must start with {', '.join(s + '://' for s in SCHEMES)}")
    if parts.scheme != "sentinel":
        return None
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    master_name = query.get("master_name", "").strip()
    if not master_name:
        raise ValueError("a sentinel:// URL needs the name of the primary the sentinels watch: "
                         "sentinel://host:26379,host:26379/0?master_name=mymaster")
    hosts = parts.netloc.rpartition("@")[2]
    sentinels = tuple(_host_port(item) for item in hosts.split(",") if item.strip())
    if not sentinels:
        raise ValueError("a sentinel:// URL needs at least one sentinel host:port")
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit():
        raise ValueError(f"the database of a sentinel:// URL is a number, got {db_text!r}")
    userinfo = parts.netloc.rpartition("@")[0]
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    return SentinelURL(sentinels, master_name, int(db_text), unquote(username) or None, unquote(password) or None)


def _host_port(item: str) -> tuple[str, int]:
    host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
    if not host:
        host, port = port, ""
    if port and not port.isdigit():
        raise ValueError(f"a sentinel's port is a number, got {item.strip()!r}")
    return host.strip("[]"), int(port) if port else DEFAULT_SENTINEL_PORT


def client(url: str, **kwargs) -> redis.Redis:
    """A redis-py client of the primary: ``Redis.from_url``, or Sentinel's ``master_for``."""
    found = parse(url)
    if found is None:
        return redis.Redis.from_url(url, **kwargs)
    sentinel_kwargs = {"socket_timeout": SENTINEL_TIMEOUT_S, "socket_connect_timeout": SENTINEL_TIMEOUT_S,
                       **found._auth()}
    manager = Sentinel(list(found.sentinels), sentinel_kwargs=sentinel_kwargs, db=found.db, **found._auth(), **kwargs)
    return manager.master_for(found.master_name)


# --- Celery's broker (kombu) ----------------------------------------------------------------------

def broker_url(url: str) -> str:
    """kombu's spelling: one ``sentinel://`` URL per sentinel, joined by ``;``, each with the database."""
    found = parse(url)
    if found is None:
        return url
    return ";".join(f"sentinel://{found._userinfo()}{host}:{port}/{found.db}" for host, port in found.sentinels)


def broker_transport_options(url: str) -> dict:
    """What kombu's Sentinel transport needs beyond the URL: the primary's name, the sentinels' auth."""
    found = parse(url)
    if found is None:
        return {}
    return {"master_name": found.master_name,
            "sentinel_kwargs": {"socket_timeout": SENTINEL_TIMEOUT_S, "socket_connect_timeout": SENTINEL_TIMEOUT_S,
                                **found._auth()}}


# --- rate limits (limits) -------------------------------------------------------------------------

def limits_uri(url: str) -> str:
    """The ``limits`` storage URI: the URL itself, or ``redis+sentinel://hosts/master_name``."""
    found = parse(url)
    if found is None:
        return url
    hosts = ",".join(f"{host}:{port}" for host, port in found.sentinels)
    return f"redis+sentinel://{found._userinfo()}{hosts}/{found.master_name}"


def limits_storage(url: str, **options) -> RedisStorage:
    """The ``limits`` storage of the counters: ``RedisStorage``, or ``RedisSentinelStorage``.

    Through Sentinel every read goes to the primary too (a replica may lag,
    and there may be none left after a failover).
    """
    found = parse(url)
    if found is None:
        return RedisStorage(url, **options)
    return RedisSentinelStorage(limits_uri(url), use_replicas=False, db=found.db,
                                sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT_S,
                                                 "socket_connect_timeout": SENTINEL_TIMEOUT_S}, **options)


# --- beat (celery-redbeat) ------------------------------------------------------------------------

def redbeat_settings(url: str, **client_options) -> dict:
    """``redbeat_redis_url`` and ``redbeat_redis_options`` for celery-redbeat.

    redbeat reaches Sentinel through a ``redis-sentinel://`` URL whose hosts it
    ignores, with ``sentinels``, ``service_name`` and ``db`` in its options.
    """
    found = parse(url)
    if found is None:
        return {"redbeat_redis_url": url, "redbeat_redis_options": dict(client_options)}
    options = {**client_options, "sentinels": list(found.sentinels), "service_name": found.master_name,
               "db": found.db,
               "sentinel_kwargs": {"socket_timeout": SENTINEL_TIMEOUT_S, "socket_connect_timeout": SENTINEL_TIMEOUT_S,
                                   **found._auth()}}
    options.update(found._auth())
    return {"redbeat_redis_url": "redis-sentinel://", "redbeat_redis_options": options}
