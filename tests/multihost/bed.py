"""The multi-host test bed: hosts as network namespaces on one private /24, each with
its own address and one link to a bridge, and the real services started on them.

    with Bed(log_dir) as bed:
        data, web, a = bed.host("data"), bed.host("web"), bed.host("a")
        env = stack_env(start_postgres(data), start_redis(data), *start_s3(data))
        url = start_web(web, env)
        start_worker(a, "io", env)
        a.link_down()   # cut off: its processes keep running, nothing reaches them
        a.kill_all()    # every process of the host SIGKILLed at once

Processes of a host reach the other hosts only over that host's link; the test process
(root namespace) reaches every host through one more link to the bridge. Where
namespaces cannot be made (not root, no iproute2), ``bed_or_missing`` fails in CI and
skips locally. ``close`` kills by pid everything spawned and deletes every namespace
and link, failed test or not.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

from pipeline.tooling import localproc
from tests import services
from tests.multihost import netns
from tests.multihost.hostservices import (  # noqa: F401 - the bed's API: tests import them from here
    AWS_CLIENT,
    PROVIDER_TOKEN,
    migrate,
    stack_env,
    start_beat,
    start_postgres,
    start_recorder,
    start_redis,
    start_s3,
    start_web,
    start_worker,
)


class Process(localproc.Process):
    """A process of one host (run from the repository root, in its own session)."""

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path):
        super().__init__(name, argv, env, log_dir, cwd=services.ROOT)


class Host:
    """One machine of the bed: a network namespace with one address and one link."""

    def __init__(self, bed: Bed, name: str, index: int):
        self.bed, self.name = bed, name
        self.ns = f"{bed.prefix}-{name}"
        self.address = str(bed.subnet[10 + index])
        self.port = f"p{index}"  # its link's end on the bridge, in the switch namespace
        self.processes: list[Process] = []
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.ns}-", dir=bed.tmp))

    def _create(self) -> None:
        netns.ip("netns", "add", self.ns)
        netns.ip("link", "set", "lo", "up", ns=self.ns)
        netns.ip("link", "add", "eth0", "netns", self.ns, "type", "veth",
                 "peer", "name", self.port, "netns", self.bed.switch)
        netns.ip("link", "set", self.port, "master", "br0", "up", ns=self.bed.switch)
        netns.ip("addr", "add", f"{self.address}/24", "dev", "eth0", ns=self.ns)
        netns.ip("link", "set", "eth0", "up", ns=self.ns)

    def spawn(self, argv: list[str], env: dict | None = None, user: str | None = None,
              log: str | None = None) -> Process:
        """Start ``argv`` inside this host (as ``user``, via setpriv); logged to ``log``-….log."""
        prefix = ["ip", "netns", "exec", self.ns]
        if user:
            prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
        proc = Process(f"{self.name}-{log or Path(argv[0]).name}", prefix + list(argv),
                       env if env is not None else dict(os.environ), self.bed.log_dir)
        self.processes.append(proc.start())
        return proc

    def link_down(self) -> None:
        """Cut this host off: its link leaves the bridge. Its processes keep running and its
        own side of the link stays up (no carrier loss): packets are silently lost, as when a
        network partitions."""
        netns.ip("link", "set", self.port, "nomaster", ns=self.bed.switch)

    def link_up(self) -> None:
        netns.ip("link", "set", self.port, "master", "br0", ns=self.bed.switch)

    def kill_all(self) -> None:
        """SIGKILL every process of this host at once, as when the machine is lost."""
        started = [(proc, proc.proc) for proc in self.processes if proc.proc is not None]
        for _proc, popen in started:
            if popen.poll() is None:
                try:
                    os.killpg(popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        netns.kill_netns(self.ns)  # anything that left its process group
        for proc, popen in started:
            popen.wait(10)
            proc._log.close()


class Bed:
    """A set of hosts on one private /24, unique to this instance (parallel test workers)."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.slot = netns.claim_slot()
        self.prefix = netns.prefix_of(self.slot)
        self.subnet = netns.subnet_of(self.slot)
        self.switch = f"{self.prefix}-sw"
        self.hosts: dict[str, Host] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix=f"genline-{self.prefix}-"))
        os.chmod(self.tmp, 0o755)  # a postgres cluster's directory lives below, owned by user postgres
        self.root_address = str(self.subnet[1])
        try:
            self._create_switch()
        except Exception:
            self.close()
            raise

    def _create_switch(self) -> None:
        netns.ip("netns", "add", self.switch)
        netns.ip("link", "add", "br0", "type", "bridge", ns=self.switch)
        netns.ip("link", "set", "br0", "up", ns=self.switch)
        # The test process's own link: a root-namespace veth on the bridge, with address .1
        netns.ip("link", "add", self.prefix, "type", "veth", "peer", "name", "root", "netns", self.switch)
        netns.ip("link", "set", "root", "master", "br0", "up", ns=self.switch)
        netns.ip("addr", "add", f"{self.root_address}/24", "dev", self.prefix)
        netns.ip("link", "set", self.prefix, "up")

    def host(self, name: str) -> Host:
        """A new host ``name`` (namespace ``gl<id>-<name>``) joined to the bridge."""
        if name in self.hosts or name == "sw":
            raise ValueError(f"host {name!r} exists")
        host = Host(self, name, len(self.hosts))
        self.hosts[name] = host
        host._create()
        return host

    def close(self) -> None:
        """SIGKILL everything spawned, delete every namespace and link of this bed."""
        for host in self.hosts.values():
            try:
                host.kill_all()
            except Exception:  # noqa: BLE001 - tear down the rest whatever happened
                pass
        netns.remove_bed(self.slot)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Bed:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bed_or_missing(log_dir: Path) -> Bed:
    """A new Bed; where namespaces cannot be made, fail in CI and skip locally, naming what is missing."""
    why = netns.why_unavailable()
    if why:
        services.missing(why)
    return Bed(log_dir)
