"""A private PostgreSQL cluster for one test run: initdb into a temporary folder, one
postgres process on a free loopback port, removed at the end.

Why not the machine's Postgres: it is shared (other suites, other checkouts, services)
and its ``max_connections`` (100 by default) is a budget that a parallel run of this
suite, with a web, workers and beat per stack, can exhaust by itself, which shows up
as "too many clients" failures in tests that have nothing to do with connections.
A cluster of our own has room for the run and nobody else's load. Durability settings
are off (fsync, full-page writes): these are the test's throwaway databases, and a
process crash (not an OS crash) loses nothing even so.

Where no ``initdb`` is installed, or the run cannot own a cluster, the suite falls back
to ``GENLINE_TEST_PG`` or the machine's Postgres, as before.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg2

from pipeline.tooling.localproc import free_port, wait_for

MAX_CONNECTIONS = 600


def find(name: str) -> str | None:
    """The newest installed PostgreSQL's ``name`` (Debian keeps them under /usr/lib/postgresql)."""
    versioned = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return versioned[-1] if versioned else shutil.which(name)


def binary(name: str) -> str:
    found = find(name)
    if found is None:
        raise FileNotFoundError(f"no {name}: apt-get install postgresql")
    return found


def _as_postgres() -> list[str]:
    """Postgres refuses to run as root: drop to the ``postgres`` user when we are root."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


class PrivateCluster:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="genline-pg-"))
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def possible() -> bool:
        if not (find("initdb") and find("postgres")):
            return False
        return os.geteuid() != 0 or bool(shutil.which("setpriv"))

    def start(self) -> PrivateCluster:
        data = self.dir / "data"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        # possible() checked both binaries exist; the name alone is the fallback mypy needs.
        subprocess.run([*_as_postgres(), binary("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
        log = open(self.dir / "postgres.log", "ab")  # noqa: SIM115 - the server's for its whole life
        self.proc = subprocess.Popen(
            [*_as_postgres(), binary("postgres"), "-D", str(data), "-c", "listen_addresses=127.0.0.1",
             "-c", f"port={self.port}", "-c", f"unix_socket_directories={self.dir}",
             "-c", f"max_connections={MAX_CONNECTIONS}", "-c", "fsync=off", "-c", "full_page_writes=off",
             "-c", "shared_buffers=128MB"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._answers, 30, f"the private postgres on port {self.port} (log: {self.dir}/postgres.log)")
        return self

    def _answers(self) -> bool:
        if self.proc and self.proc.poll() is not None:
            raise RuntimeError(f"the private postgres exited: {(self.dir / 'postgres.log').read_text()[-2000:]}")
        try:
            psycopg2.connect(self.admin_url, connect_timeout=2).close()
            return True
        except psycopg2.OperationalError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: smart shutdown is fine, every client is gone by now
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
