"""Headless Chromium for the tests: Debian's package, driven by Playwright's Python package.

Playwright's own browser download needs a network these machines lack, so the system Chromium
is launched by path, with the flags that keep it from reaching out (its background requests are
refused here and slow it down). Tests that need it skip, with the reason, where it is absent.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    """The system Chromium (FDT_CHROMIUM overrides), or None."""
    return os.environ.get("FDT_CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")


@contextmanager
def launch_chromium() -> Iterator[Any]:
    """A headless system Chromium under Playwright; skips the test where Chromium or Playwright
    is missing."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium; .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                   "(pip install -e '.[test]')")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def open_page(url: str | None = None, **context: Any) -> Iterator[Any]:
    """A page in headless system Chromium (at `url` if given)."""
    with launch_chromium() as browser:
        page = browser.new_context(**context).new_page()
        if url is not None:
            page.goto(url, wait_until="load")
        yield page
