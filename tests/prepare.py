"""Run by `make test` before pytest: make sure the services the suite needs can start.

Postgres is started with pg_ctlcluster when it is installed but down; a missing
service is reported with what to install (in CI that fails the run).
"""
from __future__ import annotations

import sys

from tests import services


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
    for problem in problems:
        print(f"make test: {problem}", file=sys.stderr)
    if problems and services.IN_CI:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
