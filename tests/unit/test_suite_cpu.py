"""tests/bench/suite_cpu.py: the CPU a test costs counts the processes it started."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import psutil

from tests.bench.suite_cpu import by_file, tree_cpu
from tests.services import ROOT

BURN = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n"


def _own(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _children_cpu(me: psutil.Process) -> float:
    """The tree's CPU without this process's own (its polling must not count for its children)."""
    return tree_cpu(me) - _own(me)


def test_a_reaped_child_and_a_live_one_count_in_the_tree():
    me = psutil.Process()
    before = _children_cpu(me)
    subprocess.run([sys.executable, "-c", BURN], check=True)  # ended and reaped
    reaped = _children_cpu(me) - before
    assert reaped >= 0.3  # it burnt 0.4 s
    live = subprocess.Popen([sys.executable, "-c", BURN + "import time; time.sleep(30)"])
    try:
        child = psutil.Process(live.pid)
        while _own(child) < 0.35:
            time.sleep(0.05)
        # Below what was waited for: tree_cpu and _own read this process's CPU one after
        # the other, and a clock tick of its own between them counts against the child.
        assert _children_cpu(me) - before - reaped >= 0.3
    finally:
        live.kill()
        live.wait()


def test_by_file_sums_each_files_tests_most_cpu_first():
    costs = {"tests/a.py::one": (1.0, 5.0), "tests/b.py::x[1]": (3.0, 4.0), "tests/a.py::two": (0.5, 1.0)}
    assert by_file(costs) == [("tests/b.py", 3.0, 4.0), ("tests/a.py", 1.5, 6.0)]


def test_the_plugin_reports_the_files_of_an_xdist_run_by_cpu(tmp_path):
    (tmp_path / "test_burns.py").write_text(textwrap.dedent(f"""
        import subprocess, sys
        def test_burns_in_a_child():
            subprocess.run([sys.executable, "-c", {BURN!r}], check=True)
        """))
    (tmp_path / "test_idle.py").write_text("def test_nothing():\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.bench.suite_cpu", "-n", "2", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    section = done.stdout.split("CPU by file (tests.bench.suite_cpu)", 1)[1].splitlines()
    lines = [line for line in section if line.strip().endswith(".py")]
    assert lines[0].endswith("test_burns.py") and lines[1].endswith("test_idle.py"), section
    assert float(lines[0].split()[0]) >= 0.35, section
