"""Linux network namespaces joined by veth links: the hosts of the multi-host bed.

A bed is a private /24 and a "switch" namespace holding one bridge; every host is a
namespace with one veth link (``eth0``) whose other end is a port of that bridge. The
test process reaches the hosts through one more veth from the root namespace. The
bridge sits in its own namespace so the root namespace's netfilter rules (docker's,
``br_netfilter``) never see the hosts' traffic.

A bed is claimed under a lock in ``/run/genline-beds``, with the pid of the process
that made it; a bed whose process died (a test run SIGKILLed) is removed by the next
claim, so nothing is left behind for long.
"""
from __future__ import annotations

import fcntl
import ipaddress
import itertools
import os
import shutil
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path

CLAIMS = Path("/run/genline-beds")
_made = itertools.count()
SLOTS = 8192  # /24s under 10.100.0.0/13: 10.100.0.0 .. 10.131.255.0


class NamespacesMissing(RuntimeError):
    """This machine cannot make network namespaces (not root, or no iproute2)."""


def why_unavailable() -> str | None:
    """None when namespaces can be made here; otherwise what is missing."""
    if os.geteuid() != 0:
        return "the multi-host bed needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to make network namespaces"
    for tool, package in (("ip", "iproute2"), ("setpriv", "util-linux")):
        if not shutil.which(tool):
            return f"the multi-host bed needs `{tool}`: apt-get install -y {package}"
    probe = f"glprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``ip`` (in namespace ``ns``); raise with its stderr when it fails and ``check``."""
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done


def netns_names() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def kill_netns(ns: str) -> None:
    """SIGKILL every process inside namespace ``ns`` (whoever started it)."""
    for pid in netns_pids(ns):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def subnet_of(slot: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"10.{100 + slot // 256}.{slot % 256}.0/24")


def prefix_of(slot: int) -> str:
    """The name prefix of a bed's namespaces and links (short: link names have 15 characters)."""
    return f"gl{slot:04x}"


@contextmanager
def _claims_lock():
    CLAIMS.mkdir(parents=True, exist_ok=True)
    with open(CLAIMS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _routes_in_use() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "-o", "route"], capture_output=True, text=True).stdout
    nets = []
    for line in out.splitlines():
        first = line.split()[0]
        if first != "default":
            nets.append(ipaddress.IPv4Network(first if "/" in first else f"{first}/32", strict=False))
    return nets


def remove_bed(slot: int) -> None:
    """Kill every process of bed ``slot``'s namespaces, delete them and its root link."""
    prefix = prefix_of(slot) + "-"
    names = [n for n in netns_names() if n.startswith(prefix)]
    for ns in names:
        kill_netns(ns)
    for ns in names:
        ip("netns", "del", ns, check=False)
    ip("link", "del", prefix_of(slot), check=False)
    (CLAIMS / str(slot)).unlink(missing_ok=True)


def claim_slot() -> int:
    """A free /24 for a new bed, recorded with our pid; beds of dead processes are removed first."""
    with _claims_lock():
        for claim in CLAIMS.iterdir():
            if claim.name.isdigit() and not _alive(int(claim.read_text() or 0)):
                remove_bed(int(claim.name))
        routes = _routes_in_use()
        names = netns_names()
        # A new slot for each bed of this process: a bed reusing the last one's addresses would
        # meet connections its process still holds to the old hosts (reset by the new ones).
        start = (os.getpid() * 17 + next(_made) * 7919) % SLOTS
        for i in range(SLOTS):
            slot = (start + i) % SLOTS
            net = subnet_of(slot)
            if (CLAIMS / str(slot)).exists() or any(net.overlaps(r) for r in routes):
                continue
            if any(n.startswith(prefix_of(slot) + "-") for n in names):
                continue
            (CLAIMS / str(slot)).write_text(str(os.getpid()))
            return slot
    raise RuntimeError("no free /24 for a multi-host bed under 10.100.0.0/13")
