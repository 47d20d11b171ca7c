"""Sign up, create an organization, enroll TOTP with a code computed here, sign in with it."""

from __future__ import annotations

import re
import time

import pytest
from allauth.mfa.totp.internal.auth import hotp_value

from accounts.models import Membership, Role
from tests.e2e.browser.conftest import PASSWORD, shoot, sign_in, sign_up, submit_and_leave

HOME = re.compile(r"^https?://[^/]+/$")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def totp(secret: str, offset: int = 0) -> str:
    return format(hotp_value(secret, int(time.time()) // 30 + offset), "06d")


def activate_totp_page(page) -> str:
    """Open TOTP enrollment (re-entering the password when allauth asks) and return the shown secret."""
    page.goto("/accounts/2fa/totp/activate/")
    if "/accounts/reauthenticate/" in page.url:
        page.fill("input[name=password]", PASSWORD)
        page.click("main form button[type=submit]")
        page.wait_for_url(re.compile(r"/accounts/2fa/totp/activate/"))
    return str(page.locator("#authenticator_secret").input_value())


def test_sign_up_create_an_organization_then_mfa_guards_the_next_sign_in(page):
    sign_up(page, "founder@example.com")
    page.wait_for_url(re.compile(r"/orgs/new$"))
    page.get_by_label("Organization name").fill("Acme Robotics")
    page.get_by_role("button", name="Create organization").click()
    page.wait_for_url(HOME)
    assert page.get_by_role("heading", name="Acme Robotics").is_visible()
    assert page.get_by_text("Getting started").is_visible()
    assert Membership.objects.get(user__email="founder@example.com").role == Role.OWNER

    secret = activate_totp_page(page)
    assert re.fullmatch(r"[A-Z2-7]{16,}", secret)
    page.fill("input[name=code]", totp(secret))
    submit_and_leave(page, "main form button[type=submit]")
    shoot(page, "mfa")

    page.context.clear_cookies()
    sign_in(page, "founder@example.com", PASSWORD)
    page.wait_for_url(re.compile(r"/accounts/2fa/authenticate/"))
    assert "Acme Robotics" not in page.content(), "nothing of the console before the second factor"
    page.fill("input[name=code]", "000000")
    page.click("main form button[type=submit]")
    assert page.get_by_text(re.compile("Incorrect code", re.I)).is_visible()
    page.fill("input[name=code]", totp(secret, offset=1))
    page.click("main form button[type=submit]")
    page.wait_for_url(HOME)
    assert page.get_by_role("heading", name="Acme Robotics").is_visible()


def test_the_admin_console_requires_the_second_factor_too(page, new_context):
    sign_up(page, "ops@example.com")
    from accounts.models import User

    User.objects.filter(email="ops@example.com").update(is_staff=True, is_superuser=True)
    secret = activate_totp_page(page)
    page.fill("input[name=code]", totp(secret))
    submit_and_leave(page, "main form button[type=submit]")

    fresh = new_context()
    fresh.goto("/admin/")
    fresh.wait_for_url(re.compile(r"/accounts/login/"))
    fresh.fill("input[name=login]", "ops@example.com")
    fresh.fill("input[name=password]", PASSWORD)
    fresh.click("main form button[type=submit]")
    fresh.wait_for_url(re.compile(r"/accounts/2fa/authenticate/"))
    fresh.fill("input[name=code]", totp(secret, offset=1))
    fresh.click("main form button[type=submit]")
    fresh.wait_for_url(re.compile(r"^https?://[^/]+/admin/$"))
    assert fresh.get_by_text("AgentKey console").first.is_visible()
