"""docs/configuration.md is generated from the settings class and kept current."""
from __future__ import annotations

import subprocess
import sys

from pipeline.config import Config
from pipeline.tooling.configdocs import render
from tests.services import ROOT

PAGE = ROOT / "docs" / "configuration.md"


def test_the_committed_reference_equals_freshly_generated_output():
    assert PAGE.read_text(encoding="utf-8") == render(), "run `genline config docs -o docs/configuration.md`"


def test_every_variable_has_its_row_with_a_description():
    page = render()
    for field in Config.model_fields.values():
        assert field.description, f"{field.validation_alias} has no description"
        assert f"| `{field.validation_alias}` |" in page


def test_the_command_writes_the_page_and_checks_it(tmp_path):
    out = tmp_path / "configuration.md"
    genline = [sys.executable, "-m", "pipeline.cli", "config", "docs"]
    written = subprocess.run([*genline, "-o", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert written.returncode == 0, written.stderr
    assert out.read_text(encoding="utf-8") == render()
    check = [*genline, "-o", str(out), "--check"]
    checked = subprocess.run(check, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    out.write_text("stale\n")
    stale = subprocess.run(check, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1 and "out of date" in stale.stderr
