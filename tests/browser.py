"""Headless Chromium from Debian's packages, driven by Selenium, for the console's browser test.

    ensure_chromium()                 # apt-get install chromium chromium-driver when missing
    with chromium(tmp_path) as driver:
        driver.get(url)

Installs Debian's ``chromium`` and ``chromium-driver`` when either binary is missing
(``apt-get update`` first) and raises with apt's output when that fails: nothing is skipped.
No browser is downloaded: Selenium is pointed at /usr/bin/chromium and /usr/bin/chromedriver.
The flags are those that work as root in a container (no sandbox, no GPU, nothing fetched
in the background) with a fresh profile per run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1200,860", "--lang=nl-NL")


class BrowserError(RuntimeError):
    pass


def ensure_chromium() -> None:
    """Install Debian's chromium and chromium-driver when they are missing."""
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    if shutil.which("apt-get") is None:
        raise BrowserError("chromium is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "-o", "DPkg::Lock::Timeout=600", "update"],
                ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q",
                 "chromium", "chromium-driver"]):
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
        if p.returncode != 0:
            raise BrowserError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        raise BrowserError("chromium and chromium-driver were installed but the binaries are"
                           f" not at {CHROMIUM} and {CHROMEDRIVER}")


@contextlib.contextmanager
def chromium(workdir: Path):
    """A Selenium driver for a fresh headless Chromium; quits it afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    ensure_chromium()
    profile = tempfile.mkdtemp(prefix="bridge-chromium-", dir=workdir)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(CHROMEDRIVER, log_output=str(Path(workdir) / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
