"""Real-browser fixtures: a Streamlit server on a free loopback port and a Playwright page in Debian's Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from hemato.config import PROJECT_ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(env_overrides: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, str]:
    """Start ``streamlit run Home.py`` on a free loopback port and wait until it answers."""
    port = _free_port()
    env = {**os.environ, **env_overrides}
    cmd = [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "Home.py"), "--server.port", str(port)]
    cmd += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    log = log_path.open("w")
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"streamlit did not start; see {log_path}")


@pytest.fixture
def app_env(tmp_path: Path) -> dict[str, str]:
    """Environment for the app under test; tests may add keys before requesting ``app_url``."""
    return {
        "HEMATO_HOME": os.environ["HEMATO_HOME"],
        "HEMATO_MODELS_DIR": os.environ["HEMATO_MODELS_DIR"],
        "HEMATO_WEIGHTS_DIR": os.environ["HEMATO_WEIGHTS_DIR"],
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


@pytest.fixture
def app_url(app_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """URL of a freshly started app, stopped after the test."""
    proc, url = start_app(app_env, tmp_path / "streamlit.log")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def page() -> Iterator:
    """A Playwright page in headless Debian Chromium."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium).")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        try:
            yield pg
        finally:
            context.close()
            browser.close()
