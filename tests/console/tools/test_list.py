"""The tools list: health badges, who has access, pending guide suggestions, in constant queries."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog.models import CredentialMode, Tool
from grants.services import grant_revoke
from tests import factories
from tests.console.tools.support import agent_client, console_for, page, with_access

pytestmark = pytest.mark.django_db

NO_CREDENTIAL = "no credential"
EXPIRING = "expires within 14 days"
EXPIRED = "credential expired"
NOT_ROTATED = "not rotated in 90 days"


def row_of(html: str, name: str) -> str:
    for row in re.findall(r"<tr>.*?</tr>", html, flags=re.S):
        if f">{name}</a>" in row:
            return str(row)
    raise AssertionError(f"{name} not listed")


def badges(html: str, name: str) -> set[str]:
    return set(re.findall(r'<span class="pill (?:danger|warn)"[^>]*>([^<]+)</span>', row_of(html, name)))


def test_a_fresh_shared_tool_is_healthy(tool, owner):
    html = page(console_for(owner), "/tools/")
    assert badges(html, "Linear") == set()
    assert "healthy" in row_of(html, "Linear")
    assert "https://linear.app" in row_of(html, "Linear")
    assert "API key" in row_of(html, "Linear")
    assert "Shared" in row_of(html, "Linear")


def test_a_shared_tool_without_a_secret_says_no_credential_and_nothing_about_rotation(org, auditor):
    factories.make_tool(org, "Notion", with_credential=False)
    assert badges(page(console_for(auditor), "/tools/"), "Notion") == {NO_CREDENTIAL}


def test_a_per_agent_tool_has_no_tool_credential_to_miss_or_rotate(per_agent_tool, owner, time_machine):
    time_machine.move_to(timezone.now() + timedelta(days=200))
    html = page(console_for(owner), "/tools/")
    assert badges(html, "GitHub") == set()
    assert "Per agent" in row_of(html, "GitHub")


def test_the_expiry_badge_appears_14_days_before_and_turns_into_expired(org, approver, time_machine):
    start = timezone.now()
    factories.make_tool(org, "Slack", credential_expires_at=start + timedelta(days=20))
    assert badges(page(console_for(approver), "/tools/"), "Slack") == set()

    time_machine.move_to(start + timedelta(days=5, hours=23))  # 14 days and 1 hour left
    assert badges(page(console_for(approver), "/tools/"), "Slack") == set()

    time_machine.move_to(start + timedelta(days=6, minutes=1))  # just under 14 days left
    assert badges(page(console_for(approver), "/tools/"), "Slack") == {EXPIRING}

    time_machine.move_to(start + timedelta(days=20, seconds=1))
    assert badges(page(console_for(approver), "/tools/"), "Slack") == {EXPIRED}


def test_the_rotation_badge_appears_after_90_days(org, owner, time_machine):
    start = timezone.now()
    factories.make_tool(org, "Sentry")
    time_machine.move_to(start + timedelta(days=89, hours=23))
    assert badges(page(console_for(owner), "/tools/"), "Sentry") == set()
    time_machine.move_to(start + timedelta(days=90, seconds=1))
    assert badges(page(console_for(owner), "/tools/"), "Sentry") == {NOT_ROTATED}


def test_a_credential_never_rotated_counts_as_not_rotated(org, owner):
    tool = factories.make_tool(org, "Legacy")
    Tool.objects.filter(pk=tool.pk).update(credential_rotated_at=None)  # imported before rotation was tracked
    assert badges(page(console_for(owner), "/tools/"), "Legacy") == {NOT_ROTATED}


def test_every_problem_shows_at_once(org, owner, time_machine):
    start = timezone.now()
    factories.make_tool(org, "Old", credential_expires_at=start + timedelta(days=100))
    time_machine.move_to(start + timedelta(days=95))
    assert badges(page(console_for(owner), "/tools/"), "Old") == {EXPIRING, NOT_ROTATED}


def test_the_list_counts_agents_with_live_access_and_pending_guide_suggestions(
    org, tool, owner, time_machine
):
    a, a_api = agent_client(org, "Alpha")
    b, b_api = agent_client(org, "Bravo")
    c, _ = agent_client(org, "Charlie")
    _, d_api = agent_client(org, "Delta")
    with_access(a, tool)
    with_access(b, tool, expires_at=timezone.now() + timedelta(hours=2))
    grant_revoke(grant=with_access(c, tool), actor=factories.OPERATOR)
    assert d_api.request_access(tool.id).status_code == 201  # pending: not counted
    a_api.suggest_instructions(tool.id, "Use the PLATFORM team for infra bugs.")
    b_api.suggest_instructions(tool.id, "Label bugs with 'agent'.")

    row = row_of(page(console_for(owner), "/tools/"), "Linear")
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
    assert cells[2].strip() == "2", "Alpha and Bravo; the revoked and the pending do not count"
    assert "2 pending" in cells[4]

    time_machine.move_to(timezone.now() + timedelta(hours=3))  # Bravo's approval has expired
    row = row_of(page(console_for(owner), "/tools/"), "Linear")
    assert re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)[2].strip() == "1"


def test_the_list_shows_only_the_active_organizations_tools(tool, other_org, stranger_approver):
    factories.make_tool(other_org, "Globex Jira")
    html = page(console_for(stranger_approver), "/tools/")
    assert "Globex Jira" in html
    assert "Linear" not in html


def test_the_list_queries_do_not_grow_with_the_catalog(org, owner):
    client = console_for(owner)

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/tools/").status_code == 200
        return len(ctx.captured_queries)

    factories.make_tool(org, "First")
    few = queries()
    for n in range(8):
        tool = factories.make_tool(org, f"Tool {n}", mode=CredentialMode.PER_AGENT if n % 2 else "shared")
        agent, api = agent_client(org, f"Agent {n}")
        if n % 2 == 0:
            with_access(agent, tool)
            api.suggest_instructions(tool.id, f"Tip number {n} for this tool.")
    many = queries()
    assert many == few, f"{few} queries for one tool, {many} for nine"
    assert many <= 8


def test_the_new_tool_button_is_for_those_who_manage_tools(tool, admin_member, approver, auditor):
    assert "/tools/new" in page(console_for(admin_member), "/tools/")
    assert "/tools/new" not in page(console_for(approver), "/tools/")
    assert "/tools/new" not in page(console_for(auditor), "/tools/")
