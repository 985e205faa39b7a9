"""Debian's Chromium and its WebDriver, for the tests that look at a page in a real headless browser
(Lab 09's dashboard). Installed on demand, by the same apt-get path as PostgreSQL's binaries.

    python -m harness.ops.browser install   # apt-get install chromium chromium-driver (as root)
    python -m harness.ops.browser check     # print where they are, exit 1 when missing
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.ops.stack.base import StackError, apt_install

PACKAGES = ["chromium", "chromium-driver"]
# Flags that let Chromium run headless as root on a machine without a display or network access.
HEADLESS_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def find_chromium() -> tuple[Path, Path] | None:
    """(browser, driver) executables when both are installed, else None."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return Path(browser), Path(driver)
    return None


def ensure_chromium() -> tuple[Path, Path]:
    """(browser, driver), installing Debian's packages first when they are missing."""
    found = find_chromium()
    if found is None:
        apt_install(PACKAGES, "Chromium and its WebDriver (for the dashboard's browser test)")
        found = find_chromium()
    if found is None:
        raise StackError(
            "apt-get installed chromium and chromium-driver but `chromium`/`chromedriver` are not "
            "on PATH."
        )
    return found


@contextmanager
def headless_chromium(profile: Path, window: str = "1400,1200") -> Iterator[Any]:
    """A Selenium WebDriver of a headless Chromium (installed on first use), its profile in
    `profile`; the browser quits when the block ends."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in [*HEADLESS_FLAGS, f"--user-data-dir={profile}", f"--window-size={window}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(chromedriver)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.ops.browser", description=__doc__)
    parser.add_argument("command", choices=["install", "check"])
    args = parser.parse_args(argv)
    try:
        found = ensure_chromium() if args.command == "install" else find_chromium()
    except StackError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    if found is None:
        print("Chromium is not installed: python -m harness.ops.browser install", file=sys.stderr)
        return 1
    print(f"chromium: {found[0]}\nchromedriver: {found[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
