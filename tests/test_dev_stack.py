"""`make dev` as a newcomer runs it, and the `genline` CLI beside it (real processes).

The stack runs from a temporary var/ on free ports, so it never meets a
developer's own `make dev`.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from pipeline.config import dev_env_defaults
from pipeline.tooling.localproc import Process, free_port, wait_for
from tests import services
from tests.services import ROOT

GENLINE = [sys.executable, "-m", "pipeline.cli"]
STACK_VARS = ("GENLINE_", "DATABASE_URL", "REDIS_URL", "STORAGE_URL", "SECRET_KEY", "FLOWER_", "PORT",
              "GUNICORN_CMD_ARGS", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")


def clean_env(**extra) -> dict:
    """This process's environment without any stack's settings: as a fresh shell has it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(STACK_VARS)}
    env.update({"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def genline(*args, cwd: Path, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*GENLINE, *args], cwd=cwd, env=env or clean_env(), capture_output=True, text=True,
                          timeout=timeout)


# --- the config loader's dev.env ----------------------------------------------------------------

def test_dev_env_fills_only_unset_variables_of_the_same_stack(tmp_path):
    # Given a var/dev.env as make dev writes it
    (tmp_path / "dev.env").write_text("# comment\nDATABASE_URL=sqlite:////x/genline.db\nREDIS_URL=redis://127.0.0.1:7/0\n"
                                      "SECRET_KEY=from-file\n")
    base = {"GENLINE_VAR_DIR": str(tmp_path)}
    # Then it fills what the environment leaves unset (empty counts as unset) ...
    assert dev_env_defaults({**base, "SECRET_KEY": ""}) == {
        "DATABASE_URL": "sqlite:////x/genline.db", "REDIS_URL": "redis://127.0.0.1:7/0", "SECRET_KEY": "from-file"}
    # ... variables already in the environment win ...
    assert dev_env_defaults({**base, "SECRET_KEY": "mine"}).get("SECRET_KEY") is None
    # ... a process of another database (a test's, the bench's, a platform's) ignores it ...
    assert dev_env_defaults({**base, "DATABASE_URL": "postgres://db/other"}) == {}
    assert dev_env_defaults({**base, "DATABASE_URL": "sqlite:////x/genline.db"})["REDIS_URL"] == "redis://127.0.0.1:7/0"
    # ... and GENLINE_DEV_ENV=off turns it off
    assert dev_env_defaults({**base, "GENLINE_DEV_ENV": "off"}) == {}


# --- the CLI away from any stack ----------------------------------------------------------------

def test_cli_outside_the_repository_says_in_one_line_there_is_no_database(tmp_path):
    # Given a directory with no var/ and no settings in the environment
    # When an operator lists jobs there
    done = genline("jobs", "list", cwd=tmp_path)
    # Then one line says what is missing and how to make it, and nothing is created
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"genline: no database at {tmp_path / 'var' / 'genline.db'}")
    assert "flask --app web db upgrade" in lines[0] and "make dev" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_cli_on_a_database_without_tables_says_so_in_one_line(tmp_path):
    # Given an empty SQLite file (migrations never ran)
    (tmp_path / "empty.db").touch()
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}")
    for args in (["jobs", "list"], ["keys", "list"], ["webhooks", "secret"]):
        done = genline(*args, cwd=tmp_path, env=env)
        # Then: one line naming the missing tables and the release step, no traceback
        assert done.returncode == 1, done
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "no genline tables" in done.stderr and "Traceback" not in done.stderr


def test_submit_beside_make_dev_takes_its_key_and_url_from_dev_env(tmp_path):
    # Given a var/dev.env as make dev writes it, and no web listening on its URL
    (tmp_path / "var").mkdir()
    url = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "var" / "dev.env").write_text(f"GENLINE_API_KEY=gl_dev\nGENLINE_URL={url}\n")
    # When a user submits there with nothing in the environment
    done = genline("submit", "a prompt", cwd=tmp_path)
    # Then the client used the key and the URL of dev.env: it went to that URL, in one line
    assert done.returncode == 1, done
    assert f"{url}/v1/jobs" in done.stderr and "set GENLINE_API_KEY" not in done.stderr
    assert "Traceback" not in done.stderr


# --- make dev, and the CLI beside it --------------------------------------------------------------

@pytest.fixture
def make_dev(tmp_path, log_dir):
    """`make dev` in its own process group (as a terminal runs it), on free ports and a temporary var/."""
    venv = Path(sys.prefix)
    if not (venv / ".installed-dev").exists():
        services.missing(f"{venv} was not installed by make (no .installed-dev stamp): run `make test`")
    ports = {"PORT": free_port(), "FLOWER_PORT": free_port(), "GENLINE_DEV_REDIS_PORT": free_port()}
    env = clean_env(GENLINE_VAR_DIR=str(tmp_path / "var"), **{k: str(v) for k, v in ports.items()})
    proc = Process("make-dev", ["make", "--no-print-directory", "dev", f"VENV={venv}"], env, log_dir, cwd=ROOT).start()
    base = f"http://127.0.0.1:{ports['PORT']}"
    try:
        wait_for(lambda: requests.get(f"{base}/readyz", timeout=2).ok, 90, "make dev's web to be ready")
        proc.wait_for_log("ready.", 60)  # the worker
        # Both worker kinds of the Procfile: the gevent I/O worker and the prefork compute worker
        wait_for(lambda: re.search(r"io@\S+ ready\.", proc.log()) and re.search(r"compute@\S+ ready\.", proc.log()),
                 60, "both worker kinds")
        yield proc, base, ports, tmp_path
    finally:
        proc.stop(40)


@pytest.mark.slow
def test_make_dev_banner_loopback_cli_beside_it_and_a_clean_ctrl_c(make_dev):
    proc, base, ports, home = make_dev
    var = home / "var"
    log = proc.log()

    # The banner is the first and last thing before the processes' logs: no pip, no migration output
    before, _, after = log.partition("genline is running:")
    assert before.strip() == "", before
    banner, _, logs = after.partition("Stop with Ctrl-C.")
    assert ("bin/activate" in banner) or ("export PATH=" in banner)
    assert re.match(r"\s*\d\d:\d\d:\d\d system\s+\|", logs), logs[:300]
    # And gunicorn and Flower listen on 127.0.0.1 only
    assert f"Listening at: http://127.0.0.1:{ports['PORT']}" in log
    wait_for(lambda: f"Visit me at http://127.0.0.1:{ports['FLOWER_PORT']}" in proc.log(), 30, "Flower")

    # var/dev.env carries the stack's settings
    settings = dict(line.split("=", 1) for line in (var / "dev.env").read_text().splitlines() if "=" in line
                    and not line.startswith("#"))
    assert settings["REDIS_URL"] == f"redis://127.0.0.1:{ports['GENLINE_DEV_REDIS_PORT']}/0"
    assert settings["GENLINE_PUBLIC_URL"] == base and settings["GENLINE_WEBHOOK_SECRET"].startswith("whsec_")
    key = settings["GENLINE_API_KEY"]
    assert key == (var / "dev_api_key").read_text().strip()
    headers = {"Authorization": f"Bearer {key}"}

    # Given a job that fails once (the dev key, through the dev server)
    body = {"prompt": "fails then works", "params": {"size": "64x64", "simulate": {"fail_attempts": 1}},
            "budget": {"max_attempts": 1}}
    job = requests.post(f"{base}/v1/jobs", json=body, headers=headers, timeout=10).json()
    failed = requests.get(f"{base}/v1/jobs/{job['id']}?wait=30", headers=headers, timeout=40).json()
    assert failed["status"] == "failed"

    # When the CLI, run beside make dev with nothing in its environment, lists, shows and retries it
    listed = genline("jobs", "list", cwd=home)
    assert listed.returncode == 0 and job["id"] in listed.stdout, listed
    retried = genline("jobs", "retry", job["id"], cwd=home)
    assert retried.returncode == 0, retried
    # Then the retry went to the dev Redis: the dev worker runs it to completion
    done = requests.get(f"{base}/v1/jobs/{job['id']}?wait=30", headers=headers, timeout=40).json()
    assert done["status"] == "completed", done
    # And the URLs `genline jobs show` prints answer (same SECRET_KEY, the dev server's base URL)
    import json
    shown = json.loads(genline("jobs", "show", job["id"], cwd=home).stdout)
    assert shown["urls"]["self"].startswith(base)
    assert requests.get(shown["urls"]["self"], timeout=10).json()["status"] == "completed"
    assert requests.get(shown["outputs"][0]["url"], timeout=10).content.startswith(b"\x89PNG")
    # And the webhook secret is the stack's, the same every run
    secrets = {genline("webhooks", "secret", cwd=home).stdout.strip() for _ in range(2)}
    assert secrets == {settings["GENLINE_WEBHOOK_SECRET"]}

    # When the user presses Ctrl-C (SIGINT to the terminal's foreground process group)
    os.killpg(proc.pid, signal.SIGINT)
    proc.proc.wait(40)
    # Then make reports no error and everything it started is gone
    log = proc.log()
    assert "make: ***" not in log and "Traceback" not in log, log[-2000:]
    assert proc.proc.returncode in (0, -signal.SIGINT)
    for port in ports.values():
        wait_for(lambda: _closed(port), 15, f"port {port} to close")


def _closed(port: int) -> bool:
    import socket
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0
