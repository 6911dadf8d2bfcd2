"""Headless Chromium from Debian's packages, driven by Selenium, for the dashboard tests.

``make test`` installs ``chromium`` and ``chromium-driver`` when they are missing (see the
Makefile's ``browser`` target); Selenium is given both paths, so it never downloads a browser
or a driver. Screenshots go to ``build/test-artifacts/dashboard/`` (``INSIGHT_TEST_ARTIFACTS``
moves them).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("INSIGHT_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    for p in (browser, driver):
        if not Path(p).exists():
            raise RuntimeError(
                f"{p} is missing: install it with `apt-get install -y chromium chromium-driver` "
                "(`make test` does)"
            )
    return browser, driver


def chrome(width: int = 1400, height: int = 900) -> webdriver.Chrome:
    browser, driver = chromium_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--force-device-scale-factor=1",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def wait_for(what: Callable[[], Any], timeout: float = 20.0, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = what()
        except Exception as exc:  # not there yet (stale element, missing node)
            last = exc
        else:
            if last:
                return last
        time.sleep(0.05)
    raise TimeoutError(f"{message} not met in {timeout} s (last: {last!r})")


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """SEVERE browser log entries since the last call (uncaught errors, failed loads, CSP)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    ARTIFACTS.joinpath("dashboard").mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "dashboard" / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def api(base: str, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
    """A JSON call from the browser thread (the test's event loop serves the stack)."""
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + "/api/v1" + path, data, headers, method=method)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")
