"""Run by `make test` before pytest: make sure the services the suite needs can start.

Postgres is started with pg_ctlcluster when it is installed but down; a missing
service is reported with what to install (in CI that fails the run).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tests import services


def ensure_chromium() -> str | None:
    """Debian's chromium for the page tests: apt-get installed when missing and we are root."""
    from tests import browser
    if browser.chromium_path():
        return None
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("make test: installing chromium for the browser tests (apt-get install -y chromium)", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], env=env)
        if browser.chromium_path():
            return None
    return "Chromium is missing for the browser tests: apt-get install -y chromium"


def main() -> int:
    problems = []
    try:
        services.ensure_postgres()
    except services.ServiceMissing as exc:
        problems.append(str(exc))
    try:
        services.redis_server_binary()
    except services.ServiceMissing as exc:
        problems.append(str(exc))
    problem = ensure_chromium()
    if problem:
        problems.append(problem)
    for problem in problems:
        print(f"make test: {problem}", file=sys.stderr)
    if problems and services.IN_CI:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
