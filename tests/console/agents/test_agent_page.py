"""The agents list and an agent's page: keys, access with revoke, recent activity."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import AgentKey
from audit.models import Action
from grants.models import AccessGrant, GrantStatus
from grants.services import grant_approve, grant_assign, grant_deny, grant_request
from tests import factories
from tests.console.agents.helpers import console_for, page

pytestmark = pytest.mark.django_db

REASON = "I need it to file the bugs from today's test run."


def approved(agent, tool, *, expires_at=None) -> AccessGrant:
    return grant_assign(agent=agent, tool=tool, actor=factories.OPERATOR, expires_at=expires_at)


def row_of(text: str, label: str) -> str:
    match = re.search(r"<tr>(?:(?!</tr>).)*" + re.escape(label) + r".*?</tr>", text, re.S)
    assert match, f"no row for {label}"
    return match.group(0)


def test_revoking_from_the_agent_page_cuts_the_agent_off(approver, agent, api, tool, audit_log):
    request_id = api.request_access(tool.id).json()["request_id"]
    grant = AccessGrant.objects.get(id=request_id)
    grant_approve(grant=grant, reviewer=approver)
    assert api.credentials(tool.id).status_code == 200

    client = console_for(approver)
    agent_url = f"/agents/{agent.id}/"
    text = page(client.get(agent_url))
    assert f'action="/grants/{grant.id}/revoke"' in text
    assert f'name="next" value="{agent_url}"' in text
    assert "data-confirm=" in text

    audit_log.mark()
    response = client.post(f"/grants/{grant.id}/revoke", {"next": agent_url}, follow=True)
    assert response.redirect_chain[-1][0] == agent_url
    assert "no longer has access to Linear" in page(response)
    assert audit_log.actions() == [Action.GRANT_REVOKED]
    assert [e.actor_id for e in audit_log.new()] == [str(approver.user_id)]
    assert api.credentials(tool.id).status_code == 403, "the very next vend is refused"
    assert "Revoked" in row_of(page(response), "Linear")


def test_an_auditor_sees_the_page_but_no_revoke_button_and_cannot_revoke(auditor, agent, tool, audit_log):
    grant = approved(agent, tool)
    client = console_for(auditor)
    text = page(client.get(f"/agents/{agent.id}/"))
    assert "Linear" in text
    assert "/revoke" not in text
    audit_log.mark()
    assert client.post(f"/grants/{grant.id}/revoke").status_code == 403
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.APPROVED
    assert audit_log.actions() == []


def test_the_agent_page_shows_keys_grants_and_effective_status(owner, org, issued, time_machine):
    agent = issued.agent
    linear = factories.make_tool(org, "Linear")
    notion = factories.make_tool(org, "Notion")
    slack = factories.make_tool(org, "Slack")
    factories.make_tool(org, "Figma")
    approved(agent, linear, expires_at=timezone.now() + timedelta(hours=1))
    approved(agent, notion)
    grant_deny(
        grant=grant_request(agent=agent, tool=slack, reason=REASON), reviewer=owner, reason="Not for bots."
    )
    time_machine.move_to(timezone.now() + timedelta(hours=2))

    text = page(console_for(owner).get(f"/agents/{agent.id}/"))
    assert issued.key.plaintext not in text
    key = AgentKey.objects.get(agent=agent)
    assert key.key_hash not in text, "never a hash"
    assert key.prefix in text
    assert agent.description in text

    linear_row = row_of(text, "Linear")
    assert "Expired" in linear_row, "an approval past its expiry shows as expired"
    assert "/revoke" not in linear_row
    notion_row = row_of(text, "Notion")
    assert "Approved" in notion_row
    assert "no expiry" in notion_row
    assert "/revoke" in notion_row
    assert "tests" in notion_row, "who decided"
    slack_row = row_of(text, "Slack")
    assert "Denied" in slack_row
    assert "/revoke" not in slack_row
    assert "Figma" not in text, "only tools the agent has a grant for"


def test_recent_activity_is_the_agents_latest_25_events_with_labels(owner, approver, agent, api, tool):
    for _ in range(15):
        api.credentials(tool.id)  # 403 while not approved, no event
    approved(agent, tool)
    for _ in range(30):
        assert api.credentials(tool.id).status_code == 200
    other = factories.make_agent(owner.org, "Other-Agent")
    text = page(console_for(owner).get(f"/agents/{agent.id}/"))
    activity = text.split('id="activity-title"', 1)[1]
    assert activity.count("Credential fetched") == 25
    assert "Access assigned directly" not in activity, "older than the 25 newest"
    assert other.agent.name not in activity
    assert f'href="/audit/?agent={agent.id}"' in text

    assert "/audit/?agent=" not in page(console_for(approver).get(f"/agents/{agent.id}/")), (
        "the link to the audit log only for roles that may read it"
    )


def test_the_list_shows_status_approved_tools_and_last_activity(owner, org, time_machine):
    quiet = factories.make_agent(org, "Quiet-Agent", description="Never does anything.").agent
    busy = factories.make_agent(org, "Busy-Agent").agent
    tools = [factories.make_tool(org, f"Tool {i}") for i in range(4)]
    approved(busy, tools[0])
    approved(busy, tools[1])
    approved(busy, tools[2], expires_at=timezone.now() + timedelta(hours=1))
    grant_request(agent=busy, tool=tools[3], reason=REASON)
    time_machine.move_to(timezone.now() + timedelta(hours=2))
    from accounts.services import agent_suspend

    agent_suspend(agent=quiet, actor=factories.OPERATOR)

    text = page(console_for(owner).get("/agents/"))
    busy_row = row_of(text, "Busy-Agent")
    assert re.search(r'<td class="num">\s*2\s*</td>', busy_row), "approved and not expired"
    assert "ago" in busy_row
    quiet_row = row_of(text, "Quiet-Agent")
    assert "Never does anything." in quiet_row
    assert "Suspended" in quiet_row
    assert re.search(r'<td class="num">\s*0\s*</td>', quiet_row)
    assert text.index("Busy-Agent") < text.index("Quiet-Agent")


def _seed(org, n_agents: int, tools) -> None:
    for _ in range(n_agents):
        issued = factories.make_agent(org)
        for tool in tools:
            approved(issued.agent, tool)


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_the_list_takes_the_same_few_queries_for_many_agents(owner, org, django_assert_max_num_queries):
    tools = [factories.make_tool(org) for _ in range(3)]
    client = console_for(owner)
    _seed(org, 3, tools)
    few = _queries(client, "/agents/")
    _seed(org, 30, tools)
    with django_assert_max_num_queries(few):
        response = client.get("/agents/")
    assert len(set(re.findall(r'href="/agents/([0-9a-f-]{36})/"', page(response)))) == 33
    assert few <= 10, few


def test_the_agent_page_takes_the_same_few_queries_for_many_grants_and_keys(
    owner, org, agent, django_assert_max_num_queries
):
    from accounts.services import agent_key_rotate

    client = console_for(owner)
    url = f"/agents/{agent.id}/"
    approved(agent, factories.make_tool(org))
    few = _queries(client, url)
    for _ in range(25):
        approved(agent, factories.make_tool(org))
    for _ in range(5):
        agent_key_rotate(agent=agent, actor=factories.OPERATOR, grace=timedelta(hours=1))
    with django_assert_max_num_queries(few):
        text = page(client.get(url))
    assert text.count("/revoke") == 26
    assert few <= 12, few
