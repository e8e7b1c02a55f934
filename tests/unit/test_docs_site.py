"""The docs site: `mkdocs build --strict` passes (no broken link or anchor, no page
left out of the nav, nothing fetched), README.md stays a short overview, and every
page under docs/ is reachable from the nav."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# Needs no service: a unit-tier test (mkdocs and PyYAML come with make install).
ROOT = Path(__file__).resolve().parents[2]
README_MAX_BYTES = 12 * 1024


def nav_pages(nav) -> list[str]:
    """Every page file the mkdocs.yml nav names, in order."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def mkdocs_config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def docs_pages() -> set[str]:
    docs = ROOT / "docs"
    return {path.relative_to(docs).as_posix() for path in docs.rglob("*.md")}


def test_the_docs_site_builds_strict_and_offline(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        why = "mkdocs-material is not installed: make install (the docs extra)"
        pytest.fail(why) if os.environ.get("CI") else pytest.skip(f"{why} (this fails in CI)")
    # Given the repository's mkdocs.yml and docs/
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    # When the site is built as `make docs` builds it, into a temporary directory
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    # Then it builds with no warning at all
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert not re.search(r"^WARNING", output, re.M), output[-5000:]
    # and every nav page became a page of the site
    for page in nav_pages(mkdocs_config()["nav"]):
        built = site / ("index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html")
        assert built.is_file(), f"{page} was not built"
    # and no page loads a script, a stylesheet or a font from elsewhere (theme.font: false: no CDN)
    remote = re.compile(r"<(?:script|link)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", re.I)
    for html in site.rglob("*.html"):
        text = html.read_text()
        assert not remote.search(text), f"{html.relative_to(site)} loads {remote.search(text).group(0)}"
        assert "fonts.googleapis.com" not in text and "fonts.gstatic.com" not in text


def test_every_docs_page_is_in_the_nav_and_every_nav_page_exists():
    nav = nav_pages(mkdocs_config()["nav"])
    pages = docs_pages()
    assert len(nav) == len(set(nav)), f"a page is in the nav twice: {sorted(nav)}"
    assert pages - set(nav) == set(), "pages under docs/ missing from the mkdocs.yml nav"
    assert set(nav) - pages == set(), "the nav names pages that docs/ does not have"


def test_readme_is_a_short_overview_that_links_into_the_docs():
    readme = (ROOT / "README.md").read_text()
    size = len(readme.encode())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move depth into docs/ (at most {README_MAX_BYTES})"
    # Its links into docs/ and the changelog all resolve
    targets = re.findall(r"\]\(((?:docs/|CHANGELOG)[^)#]*)(?:#[^)]*)?\)", readme)
    assert targets, "README.md links to no docs page"
    missing = [t for t in targets if not (ROOT / t).is_file()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
    # and it names the two commands
    assert "make dev" in readme and "make test" in readme


def test_make_docs_builds_strict_and_ci_runs_only_make_test():
    makefile = (ROOT / "Makefile").read_text()
    docs_target = re.search(r"^docs:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert docs_target and "mkdocs build --strict" in docs_target.group(1)
    assert "docs" in re.search(r"STAMP_ALL\).*\n(?:\t.*\n)*?\t.*install -e '\.\[([^]]*)\]'", makefile).group(1)
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert [line for line in ci if "make" in line] == ["exec make test"]
    assert "site/" in Path(ROOT / ".gitignore").read_text().split()


def requirement_names(text: str) -> set[str]:
    """The distribution names of a setup.cfg requirement list."""
    return {re.split(r"[<>=\[ ;]", line.strip())[0].lower() for line in text.split("\n") if line.strip()}


def test_the_docs_tools_are_the_docs_extra_not_runtime():
    import configparser
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    names = requirement_names
    assert {"mkdocs", "mkdocs-material"} <= names(parser["options.extras_require"]["docs"])
    assert not {"mkdocs", "mkdocs-material"} & names(parser["options"]["install_requires"])
