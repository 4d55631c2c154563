"""The web console as a process and a real Chromium driving it, for browser e2e tests.

The console runs as ``python -m console_svc`` (as ``make up`` runs it) against the
module's edge, on free ports. The browser is Debian's Chromium (``/usr/bin/chromium``,
installed by ``make test`` when missing), driven by the ``playwright`` package through
its executable path: no browser download.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.conftest import ROOT, free_port
from tests.e2e.conftest import Running, wait_serving

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# Where screenshots of the main pages go when PAYRAIL_CONSOLE_SCREENSHOTS is set.
SCREENSHOTS_ENV = "PAYRAIL_CONSOLE_SCREENSHOTS"


@dataclass
class ConsoleProcess:
    running: Running
    url: str
    env: dict[str, str]


def start_console(services: list[Running], tmp_dir: Path) -> Iterator[ConsoleProcess]:
    from payrail_common.keys import generate_secret_file

    gateway = next(s for s in services if s.name == "gateway")
    http_port = free_port()
    env = {
        **(gateway.env or os.environ),
        "PAYRAIL_CONSOLE_PORT": str(free_port()),
        "PAYRAIL_CONSOLE_METRICS_PORT": "0",
        "PAYRAIL_CONSOLE_HTTP_PORT": str(http_port),
        "PAYRAIL_CONSOLE_GATEWAY_TARGET": f"127.0.0.1:{gateway.port}",
        "PAYRAIL_CONSOLE_COOKIE_KEY": str(generate_secret_file(tmp_dir, "console-cookie")),
    }
    log_path = tmp_dir / "console.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "console_svc"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    running = Running(
        "console", int(env["PAYRAIL_CONSOLE_PORT"]), process, log_path, "console_svc", env
    )
    try:
        wait_serving(running)
        yield ConsoleProcess(running, f"http://127.0.0.1:{http_port}", env)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def chromium_path() -> str:
    for path in CHROMIUM_PATHS:
        if Path(path).exists():
            return path
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("Chromium is missing: `make test` installs it (apt-get install chromium)")
    return found


def launch_browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            # Running as root (CI, containers) needs --no-sandbox.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            browser.close()


def new_context(browser: Browser, *, phone: bool = False) -> BrowserContext:
    context = browser.new_context(
        viewport={"width": 390, "height": 844} if phone else {"width": 1280, "height": 900},
        timezone_id="Asia/Tokyo",
        locale="en-GB",
    )
    context.set_default_timeout(20_000)
    return context


def screenshot(page: Page, name: str) -> None:
    """Save the page for docs/ when PAYRAIL_CONSOLE_SCREENSHOTS names a directory."""
    directory = os.environ.get(SCREENSHOTS_ENV, "")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(directory) / f"{name}.png"), full_page=True)


def notification_code(env: dict[str, str], payment_id: str, timeout_s: float = 30) -> str:
    """The one-time code for a payment, from the development notification sink."""
    sink = Path(env["PAYRAIL_NOTIFICATIONS_SINK_FILE"])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sink.exists():
            for line in reversed(sink.read_text().splitlines()):
                entry = json.loads(line)
                if entry.get("payment_id") == payment_id and entry.get("code"):
                    return str(entry["code"])
        time.sleep(0.2)
    raise AssertionError(f"no code for {payment_id} in {sink}")
