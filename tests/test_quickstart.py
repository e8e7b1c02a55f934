"""README's quick start, run as written: its curl session, taken from the file, against a make-dev-style stack."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests import services
from tests.images import open_image

MARKERS = re.compile(r"<!-- quickstart -->\s*```sh\n(.*?)```\s*<!-- /quickstart -->", re.S)


def quickstart_lines() -> str:
    """The shell lines between README's ``<!-- quickstart -->`` markers."""
    found = MARKERS.findall((services.ROOT / "README.md").read_text())
    assert len(found) == 1, "README.md must hold exactly one <!-- quickstart --> ```sh block"
    return found[0]


@pytest.fixture
def web(sqlite_stack, log_dir):
    """gunicorn on the SQLite stack (SQLite, files and a worker: what make dev runs)."""
    proc, url = services.start_gunicorn(sqlite_stack.env, log_dir)
    yield url
    proc.stop()


def test_the_readme_curl_session_ends_with_a_png(web, tmp_path):
    for tool in ("bash", "curl", "jq"):
        if shutil.which(tool) is None:
            message = f"the quick start needs {tool}: apt-get install {tool}"
            pytest.fail(message) if services.IN_CI else pytest.skip(message)
    # Given a second terminal in a repository root beside make dev: var/dev.env names the stack
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "dev.env").write_text(f"GENLINE_URL={web}\nGENLINE_API_KEY=static-test-key\n")

    # When the README's lines run there, as written
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", quickstart_lines()], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)

    # Then they print the job's id, its streamed events and its completion, and leave a PNG under var/,
    # nothing in the root
    assert done.returncode == 0, done.stderr
    assert re.search(r"^job_\w+$", done.stdout, re.M), done.stdout
    assert re.search(r"^event: queued$(.|\n)*^event: completed$", done.stdout, re.M), done.stdout
    assert '"status": "completed"' in done.stdout, done.stdout
    image = open_image((tmp_path / "var" / "first.png").read_bytes())
    assert image.format == "PNG" and image.size == (512, 512)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["var"]
