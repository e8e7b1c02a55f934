"""Run by `make test` before pytest: make sure the services the suite needs can start,
and compile the checkout's bytecode once.

Postgres is started with pg_ctlcluster when it is installed but down; a missing
service is reported with what to install (in CI that fails the run).
"""
from __future__ import annotations

import compileall
import os
import shutil
import subprocess
import sys

from tests import pgcluster, services

TOOLS = {"chromium": "chromium", "jq": "jq", "openssl": "openssl", "setpriv": "util-linux",
         "promtool": "prometheus", "prometheus": "prometheus"}
"""Commands the suite runs, and the Debian package of each: the page tests drive Chromium,
the quick-start test runs the README's curl lines (jq), the TLS tests make a certificate,
the platform rehearsal drops root (setpriv), the observability tests check metrics, rules
and config with promtool and run the dashboard's queries on a real Prometheus."""


def ensure_tools() -> list[str]:
    """apt-get install the missing ones when we are root (a fresh machine); what is still missing."""
    missing = {cmd: pkg for cmd, pkg in TOOLS.items() if shutil.which(cmd) is None}
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        packages = sorted(set(missing.values()))
        print(f"make test: installing {' '.join(packages)} (apt-get install -y)", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
        if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            # A fresh machine may have no package lists yet.
            subprocess.run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL)
            subprocess.run(install, env=env, stdout=subprocess.DEVNULL)
    return [f"{cmd} is missing: apt-get install -y {pkg}" for cmd, pkg in TOOLS.items() if shutil.which(cmd) is None]


def compile_bytecode() -> None:
    """Compile the checkout's modules once.

    The suite starts some 300 Python processes from this checkout (workers, beats, web
    servers, CLIs); where ``PYTHONDONTWRITEBYTECODE`` is set, as on this project's CI
    machine, each of them compiled genline's modules again: 60 ms of CPU per start
    (`import pipeline.worker.celery`: 0.89 s without the bytecode, 0.83 s with it).
    """
    for folder in ("pipeline", "web", "tests", "clients/python"):
        compileall.compile_dir(services.ROOT / folder, quiet=1)


def main() -> int:
    compile_bytecode()
    problems = []
    if not pgcluster.PrivateCluster.possible():  # else the suite starts its own cluster (tests/conftest.py)
        try:
            services.ensure_postgres()
        except services.ServiceMissing as exc:
            problems.append(str(exc))
    try:
        services.redis_server_binary()
    except services.ServiceMissing as exc:
        problems.append(str(exc))
    problems += ensure_tools()
    for problem in problems:
        print(f"make test: {problem}", file=sys.stderr)
    if problems and services.IN_CI:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
