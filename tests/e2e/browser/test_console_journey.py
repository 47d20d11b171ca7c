"""The console journey of issue #3 in a real browser, with an agent calling the API over HTTP."""

from __future__ import annotations

import re

import pytest
import requests
from django.core import mail
from playwright.sync_api import Page, expect

from accounts.models import Membership, Role
from catalog.models import Tool
from grants.models import AccessGrant, GrantStatus
from tests.e2e.browser.conftest import PASSWORD, shoot, sign_up
from tests.factories import OPERATOR, new_credential
from tests.support.secret_watch import WATCH

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]
HOME = re.compile(r"^https?://[^/]+/$")


class Agent:
    """An AI agent on the other side of the API: plain HTTP with its bearer key."""

    def __init__(self, base: str, key: str) -> None:
        self.base, self.session = base, requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def request_access(self, tool_id: str, reason: str) -> requests.Response:
        return self.session.post(
            f"{self.base}/api/tools/{tool_id}/request", json={"reason": reason}, timeout=10
        )

    def vend(self, tool_id: str) -> requests.Response:
        return self.session.get(f"{self.base}/api/tools/{tool_id}/credentials", timeout=10)


def create_tool(org, name: str, url: str) -> tuple[Tool, str]:
    from grants.services import tool_add

    credential = new_credential("lin_api")
    WATCH.register(credential)
    tool = tool_add(
        org=org, actor=OPERATOR, name=name, url=url, credential=credential, usage_guide="Team PLATFORM."
    ).tool
    return tool, credential


def invitation_link(email: str) -> str:
    for message in reversed(mail.outbox):
        if email in message.to:
            match = re.search(r"(/invitations/[^/\s]+/)", str(message.body))
            if match:
                return match.group(1)
    raise AssertionError(f"no invitation for {email}")


def invite(page, email: str, role: str) -> None:
    page.goto("/members/")
    page.get_by_label("Email address").fill(email)
    page.locator("form[action='/members/invite'] select[name=role]").select_option(role)
    page.get_by_role("button", name="Send invitation").click()
    assert page.get_by_text(f"Invitation sent to {email}").is_visible()


def post_as(tab, path: str, form: dict[str, str]):
    """POST with the signed-in tab's session and its page's CSRF token (so a 403 is a role refusal)."""
    import json

    token = json.loads(tab.locator("body").get_attribute("hx-headers"))["X-CSRFToken"]
    response = tab.request.post(path, form=form, headers={"X-CSRFToken": token}, max_redirects=0)
    assert "CSRF verification failed" not in response.text()
    return response


def status_of(response: object) -> int:
    assert response is not None, "no navigation happened"
    return int(response.status)  # type: ignore[attr-defined]


def join(new_context, email: str) -> Page:
    tab = new_context()
    link = invitation_link(email)
    tab.goto(link)
    tab.locator("main").get_by_role("link", name="Create account").click()
    tab.fill("input[name=email]", email)
    tab.fill("input[name=password1]", PASSWORD)
    tab.fill("input[name=password2]", PASSWORD)
    tab.click("main button[type=submit]")
    tab.wait_for_url(re.compile(r"/accounts/confirm-email/"))
    from tests.e2e.browser.conftest import last_code_for

    tab.fill("input[name=code]", last_code_for(email))
    tab.click("main button[type=submit]")
    tab.wait_for_url(re.compile(r"/invitations/"))
    tab.get_by_role("button", name="Accept and join").click()
    tab.wait_for_url(HOME)
    opened: Page = tab
    return opened


def test_from_sign_up_to_a_revoked_vend(page, live_server, new_context):
    sign_up(page, "owner@example.com")
    page.get_by_label("Organization name").fill("Acme Robotics")
    page.get_by_role("button", name="Create organization").click()
    page.wait_for_url(HOME)
    org = Membership.objects.get(user__email="owner@example.com").org

    # Create an agent: the key is shown once, with its snippets, and is gone after a reload.
    page.goto("/agents/new")
    page.get_by_label("Name").fill("Onboarding-Agent")
    page.get_by_role("button", name="Create agent").click()
    key = page.locator("#agent-key").inner_text().strip()
    assert key.startswith("sk_agent_")
    WATCH.register(key)
    assert page.get_by_text("CLAUDE.md").first.is_visible()
    shoot(page, "agent-created")
    page.reload()
    assert key not in page.content(), "a reload never shows the key again"
    assert "sk_agent_" not in page.locator("main").inner_text()

    tool, credential = create_tool(org, "Linear", "https://linear.app")
    agent = Agent(live_server.url, key)
    assert agent.vend(str(tool.id)).status_code == 403
    assert agent.request_access(str(tool.id), "I file the bugs I find in Linear.").status_code == 201

    # Approve from the inbox with one click.
    page.goto("/inbox/")
    expect(page.locator("#inbox-count")).to_have_text("1")
    shoot(page, "inbox")
    item = page.locator("li.inbox-item", has_text="Onboarding-Agent wants Linear")
    item.get_by_role("button", name="Approve").click()
    page.get_by_text(re.compile(r"approved for .* by you")).wait_for()
    expect(page.locator("#inbox-count")).to_have_text("")
    assert AccessGrant.objects.get(tool=tool).status == GrantStatus.APPROVED

    vend = agent.vend(str(tool.id))
    assert vend.status_code == 200
    assert vend.json()["credential"] == credential

    # The tool page shows who has access; the audit log shows what happened.
    page.goto(f"/tools/{tool.id}/")
    assert page.get_by_text("Onboarding-Agent").first.is_visible()
    assert credential not in page.content()
    shoot(page, "tool")
    page.goto("/audit/")
    assert page.locator("#audit-results table").get_by_text("Credential fetched").first.is_visible()
    shoot(page, "audit-log")

    # Revoke from the agent page: the very next vend is refused.
    page.goto("/agents/")
    page.get_by_role("link", name="Onboarding-Agent").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=re.compile(r"^Revoke")).click()
    page.get_by_text("no longer has access to Linear").wait_for()
    refused = agent.vend(str(tool.id))
    assert refused.status_code == 403
    assert "revoked" in refused.json()["hint"]


def test_an_invited_approver_decides_but_cannot_build_and_an_auditor_only_reads(
    page, live_server, new_context
):
    sign_up(page, "lead@example.com")
    page.get_by_label("Organization name").fill("Globex")
    page.get_by_role("button", name="Create organization").click()
    page.wait_for_url(HOME)
    org = Membership.objects.get(user__email="lead@example.com").org
    invite(page, "approver@example.com", "approver")
    invite(page, "auditor@example.com", "auditor")

    approver = join(new_context, "approver@example.com")
    assert Membership.objects.get(org=org, user__email="approver@example.com").role == Role.APPROVER

    from grants.services import grant_request
    from tests.factories import make_agent

    tool, _ = create_tool(org, "Sentry", "https://sentry.io")
    requester = make_agent(org, "Triage-Agent")
    grant_request(agent=requester.agent, tool=tool, reason="Triage the error queue.")
    approver.goto("/inbox/")
    approver.locator("li.inbox-item", has_text="Triage-Agent wants Sentry").get_by_role(
        "button", name="Approve"
    ).click()
    approver.get_by_text(re.compile(r"approved for .* by you")).wait_for()
    assert AccessGrant.objects.get(tool=tool).status == GrantStatus.APPROVED

    # An approver cannot create tools or manage members: no buttons, and the server refuses.
    approver.goto("/tools/")
    assert approver.get_by_role("link", name="New tool").count() == 0
    assert status_of(approver.goto("/tools/new")) == 403
    approver.goto("/members/")
    assert approver.get_by_role("button", name="Send invitation").count() == 0
    blocked = post_as(approver, "/members/invite", {"email": "x@example.com", "role": "owner"})
    assert blocked.status == 403
    assert not Membership.objects.filter(org=org, user__email="x@example.com").exists()

    auditor = join(new_context, "auditor@example.com")
    auditor.goto("/audit/")
    assert auditor.locator("#audit-results table").get_by_text("Access approved").first.is_visible()
    with auditor.expect_download() as download:
        auditor.get_by_role("link", name=re.compile("CSV")).click()
    exported = download.value.path().read_text()
    assert "grant.approved" in exported
    for path in ("/agents/new", "/tools/new"):
        assert status_of(auditor.goto(path)) == 403
    grant = AccessGrant.objects.get(tool=tool)
    auditor.goto("/audit/")
    for path, form in (
        (f"/grants/{grant.id}/revoke", {}),
        ("/members/invite", {"email": "y@example.com", "role": "owner"}),
        ("/agents/new", {"name": "Sneaky-Agent"}),
        ("/tools/new", {"name": "Sneaky Tool"}),
        (f"/tools/{tool.id}/rotate", {"credential": "nope-nope-nope"}),
    ):
        assert post_as(auditor, path, form).status == 403, path
    assert AccessGrant.objects.get(tool=tool).status == GrantStatus.APPROVED
