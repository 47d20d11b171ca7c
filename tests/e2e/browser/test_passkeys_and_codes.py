"""Passkeys (WebAuthn, via Chromium's virtual authenticator) and sign-in by emailed code."""

from __future__ import annotations

import re

import pytest
from allauth.mfa.models import Authenticator

from tests.e2e.browser.conftest import PASSWORD, last_code_for, sign_up, submit_and_leave

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]
ORG_OR_HOME = re.compile(r"^https?://[^/]+/(orgs/new)?$")


def virtual_authenticator(page) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )


def test_a_passkey_signs_in_without_a_password(page):
    virtual_authenticator(page)
    sign_up(page, "passkey@example.com")
    page.goto("/accounts/2fa/webauthn/add/")
    if "/accounts/reauthenticate/" in page.url:
        page.fill("input[name=password]", PASSWORD)
        page.click("main form button[type=submit]")
        page.wait_for_url(re.compile(r"/accounts/2fa/webauthn/add/"))
    page.fill("input[name=name]", "Laptop passkey")
    page.check("input[name=passwordless]")
    submit_and_leave(page, "#mfa_webauthn_add")
    key = Authenticator.objects.get(user__email="passkey@example.com", type=Authenticator.Type.WEBAUTHN)
    assert key.wrap().is_passwordless, "a discoverable credential (passkey)"

    page.context.clear_cookies()
    page.goto("/accounts/login/")
    page.click("#passkey_login")
    page.wait_for_url(ORG_OR_HOME)
    assert "Sign out" in page.content(), "signed in with the passkey alone"


def test_sign_in_by_an_emailed_code(page):
    sign_up(page, "coded@example.com")
    page.context.clear_cookies()
    page.goto("/accounts/login/code/")
    page.fill("input[name=email]", "coded@example.com")
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r"/accounts/login/code/confirm/"))
    page.fill("input[name=code]", last_code_for("coded@example.com"))
    page.click("main form button[type=submit]")
    page.wait_for_url(ORG_OR_HOME)
    assert "Sign out" in page.content()
