"""Where the suite's CPU goes: a pytest plugin that sums the CPU each test costs.

    .venv/bin/python -m pytest -p tests.bench.suite_cpu -n 6 --dist loadgroup --no-loadscope-reorder --ignore=tests/unit

A test's CPU is that of the process running it and of every process it started
(workers, beat, gunicorn, Redis; live or already reaped), read before and after
it; a module-scoped stack counts in the test that built it. At the end the run
prints its files by CPU beside their test time. On two cores the integration
tier is bound by CPU, not by waiting, so this is the table to read before
making it faster (docs/development.md).

Written here because the tools at hand measure something else: ``--durations``
reports wall time (a test waiting 30 s for a grace period costs no CPU), and
pytest-benchmark times code inside one process, not a tree of services.
The Postgres cluster of an xdist run belongs to the controller, so its backends'
CPU is not in any test's figure (with ``-n 0`` it is, in the test that used it).
"""
from __future__ import annotations

import collections
import json
import time

import psutil
import pytest

_KEY = "genline_suite_cpu"


def tree_cpu(process: psutil.Process) -> float:
    """CPU seconds (user + system) of ``process``, its reaped children and its live descendants."""
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:  # ended between the listing and the read: its parent reaps it into its own
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def by_file(costs: dict[str, tuple[float, float]]) -> list[tuple[str, float, float]]:
    """``(file, cpu, wall)`` summed over each file's tests, most CPU first."""
    cpu: dict[str, float] = collections.defaultdict(float)
    wall: dict[str, float] = collections.defaultdict(float)
    for nodeid, (seconds, waited) in costs.items():
        path = nodeid.split("::", 1)[0]
        cpu[path] += seconds
        wall[path] += waited
    return sorted(((path, seconds, wall[path]) for path, seconds in cpu.items()), key=lambda row: -row[1])


class SuiteCpu:
    def __init__(self, config) -> None:
        self.config = config
        self.me = psutil.Process()
        self.costs: dict[str, tuple[float, float]] = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item):
        # Only where the test runs (an xdist worker, or the one process of -n 0).
        cpu, start = tree_cpu(self.me), time.monotonic()
        yield
        self.costs[item.nodeid] = (tree_cpu(self.me) - cpu, time.monotonic() - start)

    def pytest_sessionfinish(self, session) -> None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker hands its figures to the controller
            workeroutput[_KEY] = json.dumps(self.costs)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        self.costs.update({k: tuple(v) for k, v in json.loads(node.workeroutput.get(_KEY, "{}")).items()})

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if hasattr(self.config, "workerinput") or not self.costs:
            return
        rows = by_file(self.costs)
        total = sum(cpu for _path, cpu, _wall in rows)
        terminalreporter.section("CPU by file (tests.bench.suite_cpu)")
        terminalreporter.write_line(f"{total:8.1f} s CPU over {sum(w for _p, _c, w in rows):.1f} s of test time, "
                                    f"{len(self.costs)} tests")
        for path, cpu, wall in rows[:30]:
            terminalreporter.write_line(f"{cpu:8.1f} s CPU {wall:8.1f} s  {path}")


def pytest_configure(config) -> None:
    config.pluginmanager.register(SuiteCpu(config), "genline-suite-cpu")
