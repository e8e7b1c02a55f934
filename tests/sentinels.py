"""A replicated Redis watched by Redis Sentinel, started by the tests on loopback ports, by pid.

A primary, a replica of it (``--replicaof``) and three sentinels (quorum 2,
``down-after-milliseconds`` 1000): killing the primary makes the sentinels
promote the replica within a few seconds, as a managed Sentinel deployment would.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests import services

MASTER_NAME = "genline-primary"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


class SentinelRedis:
    """Primary, replica and three sentinels; ``url`` is the ``sentinel://`` REDIS_URL of them all."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="genline-sentinel-"))
        self.primary_port, self.replica_port = services.free_port(), services.free_port()
        self.sentinel_ports = [services.free_port() for _ in range(3)]
        self.procs: dict[str, subprocess.Popen] = {}
        self.killed_at = 0.0

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"sentinel://{hosts}/0?master_name={MASTER_NAME}"

    def start(self) -> SentinelRedis:
        self._server("primary", self.primary_port)
        self._server("replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port))
        replica = redis.Redis(port=self.replica_port)
        services.wait_for(lambda: replica.info("replication").get("master_link_status") == "up", 20,
                          "the replica in sync with the primary")
        for index, port in enumerate(self.sentinel_ports):
            conf = self.dir / f"sentinel-{index}.conf"  # a sentinel rewrites its own file: one each
            conf.write_text("\n".join([
                f"port {port}", "bind 127.0.0.1", f"dir {self.dir}",
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.primary_port} 2",
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {MASTER_NAME} 1", ""]))
            self._spawn(f"sentinel-{index}", [services.redis_server_binary(), str(conf), "--sentinel"])
        # Ready once every sentinel knows the other two and the replica (a failover needs both).
        services.wait_for(self._sentinels_ready, 30, "three sentinels that see each other and the replica")
        return self

    def _server(self, name: str, port: int, *extra: str) -> None:
        self._spawn(name, [services.redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", str(self.dir), "--dbfilename", f"{name}.rdb",
                           "--maxmemory-policy", "noeviction", *extra])
        client = redis.Redis(port=port)
        services.wait_for(client.ping, 10, f"redis {name} on port {port}")

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the process's life
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def _sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=1, decode_responses=True)

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            client = self._sentinel(port)
            peers = client.execute_command("SENTINEL", "SENTINELS", MASTER_NAME)
            replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
            if len(peers) < 2 or not replicas:
                return False
        return True

    def primary_ports(self) -> set[int]:
        """The primary's port as each sentinel names it (one port once they agree)."""
        ports = set()
        for port in self.sentinel_ports:
            _host, primary = self._sentinel(port).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            ports.add(int(primary))
        return ports

    def kill_primary(self) -> None:
        """SIGKILL the primary, as a crashed host: whatever it had not replicated is gone."""
        proc = self.procs["primary"]
        proc.kill()
        self.killed_at = time.monotonic()
        proc.wait(10)

    def wait_promoted(self, timeout: float = 30) -> float:
        """Wait until every sentinel names the replica as the primary; returns the seconds since the kill."""
        replica = redis.Redis(port=self.replica_port)
        services.wait_for(lambda: self.primary_ports() == {self.replica_port}
                          and replica.info("replication")["role"] == "master", timeout, "the replica promoted")
        return time.monotonic() - self.killed_at

    def primary(self) -> redis.Redis:
        """A client of whichever server is the primary now."""
        (port,) = self.primary_ports()
        return redis.Redis(port=port)

    def keyspace(self) -> str:
        """Every key of the primary but the in-flight markers, with its type and size: what a failure left."""
        (port,) = self.primary_ports()
        primary, lines = redis.Redis(port=port, decode_responses=True), []
        for key in sorted(str(k) for k in primary.keys("*")):  # str already: decode_responses
            if key.startswith("genline:inflight:"):
                continue
            kind = str(primary.type(key))
            size = {"list": primary.llen, "hash": primary.hlen, "zset": primary.zcard, "set": primary.scard}.get(kind)
            lines.append(f"{key!r} {kind} {size(key) if size else ''}")
        markers = len(primary.keys("genline:inflight:*"))
        return "\n".join([*lines, f"{markers} in-flight markers"])

    def log(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(self.dir.glob("*.log")))

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
