"""The console in Debian's headless Chromium: log in, visit every page, keep screenshots
in tests/artifacts/ (git-ignored) for a person to look at."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from console_apptest import DEV_PASSWORD, REPO
from testkit import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts"
PAGES = [  # (sidebar link, text that proves the page rendered with data)
    ("Overview", "Messages today"),
    ("SLA", "p95 first response per channel"),
    ("Escalations", "Messages since the escalation"),
    ("Customers", "Timeline across channels"),
    ("Knowledge base", "Search articles"),
    ("Dead letters", "Waiting for a decision"),
    ("System", "Consumer lag per partition"),
]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")




@pytest.fixture
def console_server(console_env):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fte.cli", "console", "--port", str(port)],
                            cwd=REPO, env=dict(os.environ), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise AssertionError(f"console did not start: {proc.stderr.read().decode()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(15)


def test_lead_logs_in_and_every_page_renders(console_server):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
            viewport={"width": 1440, "height": 1800},
        )
        page = browser.new_page()
        page.goto(console_server)
        expect(page.get_by_text("Sign in to see customers")).to_be_visible(timeout=30_000)
        assert page.get_by_text("Ada Lovelace").count() == 0
        page.screenshot(path=str(ARTIFACTS / "console-0-login.png"))

        page.get_by_role("textbox", name="User").fill("lead")
        page.get_by_role("textbox", name="Password").fill(DEV_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        for index, (link, proof) in enumerate(PAGES, start=1):
            page.get_by_test_id("stSidebarNav").get_by_role("link", name=link).click()
            if link == "Customers":
                search = page.get_by_role("textbox", name="Search by email, phone or name")
                search.fill("ada@example.com")
                search.press("Enter")
            expect(page.get_by_text(proof).first).to_be_visible(timeout=30_000)
            page.wait_for_timeout(1500)  # let charts finish drawing
            expect(page.get_by_test_id("stException")).to_have_count(0)
            name = link.lower().replace(" ", "-")
            page.screenshot(path=str(ARTIFACTS / f"console-{index}-{name}.png"), full_page=True)
        browser.close()
    assert len(list(ARTIFACTS.glob("console-*.png"))) >= len(PAGES) + 1
