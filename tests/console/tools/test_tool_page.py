"""The tool page: details, health, who has access (with revoke), pending work, recent activity."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import Action
from grants.models import AccessGrant, GrantStatus
from grants.services import grant_deny, grant_revoke
from tests import factories
from tests.console.tools.support import agent_client, console_for, page, with_access

pytestmark = pytest.mark.django_db


def access_row(html: str, agent_name: str) -> str:
    for row in re.findall(r"<tr>.*?</tr>", html, flags=re.S):
        if f">{agent_name}</a>" in row:
            return str(row)
    raise AssertionError(f"{agent_name} not in the access table")


def test_the_page_shows_details_and_credential_state_but_never_the_credential(tool, credential, owner):
    html = page(console_for(owner), f"/tools/{tool.id}/")
    assert "https://linear.app/" in html
    assert "API key" in html
    assert tool.config_key in html
    assert '<span class="pill ok">set</span>' in html
    assert "healthy" in html
    assert "Team key: PLATFORM." in html, "the usage guide preview"
    assert credential not in html


def test_who_has_access_with_each_status_and_revoke_only_for_live_approvals(org, tool, owner, time_machine):
    approved, _ = agent_client(org, "Approved-Agent")
    timed, _ = agent_client(org, "Timed-Agent")
    _, pending_api = agent_client(org, "Pending-Agent")
    _, denied_api = agent_client(org, "Denied-Agent")
    revoked, _ = agent_client(org, "Revoked-Agent")
    live = with_access(approved, tool)
    lapsed = with_access(timed, tool, expires_at=timezone.now() + timedelta(hours=1))
    pending_api.request_access(tool.id)
    denied_api.request_access(tool.id)
    grant_deny(
        grant=AccessGrant.objects.get(agent__name="Denied-Agent"),
        reviewer=factories.OPERATOR,
        reason="Not needed.",
    )
    grant_revoke(grant=with_access(revoked, tool), actor=factories.OPERATOR)
    time_machine.move_to(timezone.now() + timedelta(hours=2))  # Timed-Agent's approval has lapsed

    html = page(console_for(owner), f"/tools/{tool.id}/")
    expected = {
        "Approved-Agent": "approved",
        "Timed-Agent": "expired",
        "Pending-Agent": "pending",
        "Denied-Agent": "denied",
        "Revoked-Agent": "revoked",
    }
    for name, status in expected.items():
        assert f'<span class="pill {status}">{status}</span>' in access_row(html, name), name
    assert f"/grants/{live.id}/revoke" in access_row(html, "Approved-Agent")
    assert f'name="next" value="/tools/{tool.id}/"' in access_row(html, "Approved-Agent")
    assert "/revoke" not in access_row(html, "Timed-Agent"), "expired access has nothing to revoke"
    assert lapsed.expires_at.strftime("%Y-%m-%d %H:%M") in access_row(html, "Timed-Agent")
    assert "1 approved" in html
    assert "1 pending request — decide in the inbox" in html
    assert 'href="/inbox/"' in html
    assert html.index("Approved-Agent") < html.index("Pending-Agent") < html.index("Revoked-Agent")


def test_revoke_from_the_tool_page_returns_here_and_the_next_vend_is_refused(org, tool, approver, audit_log):
    agent, api = agent_client(org, "Onboarding-Agent")
    grant = with_access(agent, tool)
    assert api.credentials(tool.id).status_code == 200
    audit_log.mark()
    client = console_for(approver)
    response = client.post(f"/grants/{grant.id}/revoke", {"next": f"/tools/{tool.id}/"})
    assert (response.status_code, response["Location"]) == (302, f"/tools/{tool.id}/")
    assert api.credentials(tool.id).status_code == 403
    assert audit_log.actions()[0] == Action.GRANT_REVOKED
    assert '<span class="pill revoked">revoked</span>' in access_row(
        page(client, f"/tools/{tool.id}/"), agent.name
    )


def test_revoke_buttons_are_for_those_who_decide(org, tool, auditor):
    agent, _ = agent_client(org, "Onboarding-Agent")
    with_access(agent, tool)
    assert "/revoke" not in page(console_for(auditor), f"/tools/{tool.id}/")


def test_pending_guide_suggestions_are_listed_with_a_way_to_review(org, tool, approver):
    agent, api = agent_client(org, "Onboarding-Agent")
    with_access(agent, tool)
    api.suggest_instructions(tool.id, "Bugs go to the PLATFORM team, features to PRODUCT.")
    html = page(console_for(approver), f"/tools/{tool.id}/")
    assert "Bugs go to the PLATFORM team, features to PRODUCT." in html
    assert "1 pending" in html
    assert f"/tools/{tool.id}/guide#suggestions" in html


def test_recent_activity_is_this_tools_newest_first_for_those_who_read_the_audit_log(
    org, tool, auditor, approver
):
    other = factories.make_tool(org, "Other tool")
    agent, api = agent_client(org, "Onboarding-Agent")
    with_access(agent, tool)
    with_access(agent, other)
    for _ in range(30):
        api.credentials(tool.id)
    api.credentials(other.id)

    html = page(console_for(auditor), f"/tools/{tool.id}/")
    section = html[html.index('id="activity-h"') :]
    rows = re.findall(r"<tr><td", section)
    assert len(rows) == 25
    assert "Credential fetched" in section
    assert "Access assigned directly" not in section, "older than the newest 25"
    assert "Other tool" not in section
    assert f'href="/audit/?tool={tool.id}"' in section

    assert 'id="activity-h"' not in page(console_for(approver), f"/tools/{tool.id}/"), (
        "approvers do not read the audit log"
    )


def test_a_shared_tool_without_credential_says_so(org, owner):
    tool = factories.make_tool(org, "Notion", with_credential=False)
    html = page(console_for(owner), f"/tools/{tool.id}/")
    assert '<span class="pill danger">not set</span>' in html
    assert "no credential" in html
    assert "Add credential" in html


def test_a_per_agent_tool_explains_where_its_credentials_live(per_agent_tool, owner):
    html = page(console_for(owner), f"/tools/{per_agent_tool.id}/")
    assert "One per agent, given when its request is approved." in html
    assert "/rotate" not in html


def test_another_organizations_tool_is_not_found(tool, stranger_approver):
    assert console_for(stranger_approver).get(f"/tools/{tool.id}/").status_code == 404


def test_the_tool_page_queries_do_not_grow_with_agents_or_events(org, tool, owner):
    client = console_for(owner)

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(f"/tools/{tool.id}/").status_code == 200
        return len(ctx.captured_queries)

    first, api = agent_client(org, "Agent 0")
    with_access(first, tool)
    api.suggest_instructions(tool.id, "Tip zero.")
    few = queries()
    for n in range(1, 10):
        agent, api = agent_client(org, f"Agent {n}")
        with_access(agent, tool)
        api.credentials(tool.id)
        api.suggest_instructions(tool.id, f"Tip number {n}.")
    many = queries()
    assert many == few, f"{few} queries with one agent, {many} with ten"
    assert many <= 10
    assert AccessGrant.objects.filter(tool=tool, status=GrantStatus.APPROVED).count() == 10
