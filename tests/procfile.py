"""The Procfile, the docs' deployment page and platform files as the deploy tests read them."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def procfile(root: Path = ROOT) -> dict[str, str]:
    """Process name -> command line, in the Procfile's order."""
    lines = {}
    for line in (root / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            lines[name.strip()] = command.strip()
    return lines


def docs_command(marker: str, page: str = "deployment.md", root: Path = ROOT) -> str:
    """The first line of a code block of docs/``page`` that starts with ``marker``."""
    for line in (root / "docs" / page).read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith(marker):
            return stripped
    raise AssertionError(f"docs/{page} has no line starting with {marker!r}")


def squash(command: str) -> str:
    """A command with its whitespace normalised, for comparing one file's with another's."""
    return re.sub(r"\s+", " ", command).strip()


def start_line(name: str, env: dict, log_dir: Path, cwd: Path = ROOT):
    """Start the Procfile's ``name`` line as a platform does: ``bash -c`` with the env, in its own session."""
    import os
    import sys

    from pipeline.tooling.localproc import Process
    # The platform's PATH has the app's bin directory first (a venv's, here).
    env = {**env, "PATH": os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", os.defpath)}
    return Process(name, ["bash", "-c", "exec " + procfile(cwd)[name]], env, log_dir, cwd=cwd).start()
