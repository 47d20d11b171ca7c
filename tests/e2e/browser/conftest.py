"""A real headless Chromium (Debian's package) driven by Playwright against a live server.

The live server runs in this process (pytest-django's live_server), so tests read
the email outbox and the database directly. Screenshots for the README are
written to docs/screenshots/ when AGENTKEY_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core import mail

CHROMIUM = os.environ.get("AGENTKEY_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
PASSWORD = "correct-horse-battery-staple-42"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    # Playwright's sync API runs an event loop in the test thread; the test's own
    # database calls are still synchronous, so Django's guard is relaxed here only.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: `make test` installs Debian's chromium package.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield instance
        instance.close()


class Tabs:
    """Browser tabs, each in its own context (its own cookies); every console error is kept
    so a page that breaks its own Content-Security-Policy fails the test."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.browser, self.base_url = browser, base_url
        self.contexts: list[Any] = []
        self.errors: list[str] = []

    def open(self) -> Any:
        context = self.browser.new_context(base_url=self.base_url, viewport={"width": 1280, "height": 900})
        self.contexts.append(context)
        tab = context.new_page()
        tab.set_default_timeout(15000)
        tab.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        return tab

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        csp = [e for e in self.errors if "Content Security Policy" in e]
        assert not csp, f"a page broke its own CSP: {csp[:3]}"


@pytest.fixture
def tabs(browser: Any, live_server: Any, settings: Any) -> Iterator[Tabs]:
    settings.AGENTKEY_PUBLIC_URL = live_server.url
    opened = Tabs(browser, live_server.url)
    yield opened
    opened.close()


@pytest.fixture
def page(tabs: Tabs) -> Any:
    return tabs.open()


@pytest.fixture
def new_context(tabs: Tabs) -> Any:
    return tabs.open


def shoot(page: Any, name: str) -> None:
    if os.environ.get("AGENTKEY_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def last_code_for(email: str) -> str:
    """The most recent verification or sign-in code emailed to ``email``."""
    for message in reversed(mail.outbox):
        if email in message.to:
            match = re.search(r"^\s*([A-Z0-9]{3,6}(?:-[A-Z0-9]{3,6})*)\s*$", str(message.body), re.MULTILINE)
            if match:
                return match.group(1)
    raise AssertionError(f"no code emailed to {email}: {[m.subject for m in mail.outbox]}")


def sign_up(page: Any, email: str, password: str = PASSWORD) -> None:
    page.goto("/accounts/signup/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password1]", password)
    page.fill("input[name=password2]", password)
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/accounts/confirm-email/"))
    page.fill("input[name=code]", last_code_for(email))
    submit_and_leave(page, "main button[type=submit]")


def submit_and_leave(page: Any, selector: str) -> None:
    """Click a form's submit button and wait until the browser has left the form's URL.

    ``wait_for_url`` with a pattern that the form's own URL already matches (``/accounts/2fa/``
    while on ``/accounts/2fa/totp/activate/``) returns at once, before the POST is answered; this
    waits for the navigation the submission causes instead.
    """
    before = page.url
    page.click(selector)
    page.wait_for_url(lambda url: url != before)


def sign_in(page: Any, email: str, password: str = PASSWORD) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", password)
    page.click("main form button[type=submit]")
