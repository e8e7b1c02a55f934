"""Headless Chromium for the page tests: Debian's ``chromium`` package, driven by Playwright.

Never ``playwright install``: the browser is the system's. Missing, it fails
the tests in CI and skips them locally (``tests/prepare.py`` installs it as root).
"""
from __future__ import annotations

import os
import shutil

CHROMIUM = os.environ.get("GENLINE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    """The Chromium binary, or None when it is not installed."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    return shutil.which("chromium")


def launch(playwright):
    """A headless Chromium browser."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=ARGS, headless=True)
