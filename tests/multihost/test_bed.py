"""The bed itself: hosts reach each other over their links only, and a link that is
down carries nothing until it is back up."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests import services
from tests.multihost.bed import Host


def _reach(host: Host, address: str, port: int) -> bool:
    code = f"import socket; socket.create_connection(({address!r}, {port}), timeout=2)"
    return subprocess.run(["ip", "netns", "exec", host.ns, sys.executable, "-c", code],
                          capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def hosts(bed):
    server, client = bed.host("server"), bed.host("client")
    listener = server.spawn([sys.executable, "-c", "import socket,time; s=socket.create_server(('0.0.0.0', 7000)); "
                             "print('listening', flush=True); [s.accept() for _ in iter(int, 1)]"], log="listener")
    listener.wait_for_log("listening", 20)
    return server, client


def test_hosts_reach_each_other_over_their_links_and_nothing_else(hosts, bed):
    server, client = hosts
    assert _reach(client, server.address, 7000)
    # the test process reaches every host too, through its own link to the bridge
    assert subprocess.run([sys.executable, "-c", f"import socket; socket.create_connection(({server.address!r}, 7000), "
                           "timeout=2)"]).returncode == 0
    # but a host's loopback is its own: the server's port is not on the client's 127.0.0.1
    assert not _reach(client, "127.0.0.1", 7000)


def test_a_link_down_carries_nothing_until_it_is_back(hosts):
    server, client = hosts
    client.link_down()
    try:
        assert not _reach(client, server.address, 7000)
    finally:
        client.link_up()
    # and once it is back it carries again, within seconds though not always on the first
    # connect: one CI run at load 10 had the first 2-s connect after link_up time out (the
    # client's neighbour entry for the server failed while the link was down and is resolved anew)
    services.wait_for(lambda: _reach(client, server.address, 7000), 15, "the link to carry again", interval=0.2)


def test_kill_all_leaves_no_process_of_the_host(bed):
    host = bed.host("doomed")
    procs = [host.spawn([sys.executable, "-c", "import time; time.sleep(600)"], log="sleeper") for _ in range(3)]
    host.kill_all()
    assert all(p.proc.poll() is not None for p in procs)
    assert subprocess.run(["ip", "netns", "pids", host.ns], capture_output=True, text=True).stdout.strip() == ""
