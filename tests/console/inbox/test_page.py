"""The inbox page: one list of everything waiting for a human, and the live count in the nav."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import CredentialMode
from tests import factories
from tests.console.inbox.conftest import console_for

pytestmark = pytest.mark.django_db


def test_requests_show_agent_tool_reason_duration_and_age(owner_console, tool, agent, make_request):
    make_request(tool, agent=agent, reason="Triage the on-call queue.", duration=timedelta(hours=8))
    page = owner_console.get("/inbox/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Onboarding-Agent wants Linear" in html
    assert "Triage the on-call queue." in html
    assert "asks for 8 h" in html
    assert "As requested (8 h)" in html, "the agent asked for a duration, so it can be approved as asked"
    approve_form = html[html.index('id="duration-') : html.index("</select>", html.index('id="duration-'))]
    assert "No expiry" not in approve_form, "approvers choose or shorten: never longer than asked"
    assert '<option value="8h" >8 h</option>' in approve_form
    assert '"1d"' not in approve_form
    assert "ago</time>" in html


def test_a_request_without_a_duration_offers_no_expiry_and_defaults_to_8_hours(
    owner_console, tool, make_request
):
    make_request(tool)
    html = owner_console.get("/inbox/").content.decode()
    assert "no duration asked" in html
    assert '<option value="none">No expiry</option>' in html
    assert '<option value="8h" selected>8 h</option>' in html
    assert "As requested" not in html


def test_tool_suggestions_are_sorted_by_backers_with_reasons_and_url(owner_console, suggest_tool):
    suggest_tool("Jira", "Planner-Agent")  # older, but one backer
    suggest_tool("Notion", "Docs-Agent", "Wiki-Agent", "Support-Agent", url="https://notion.so")
    suggest_tool("Figma", "Design-Agent", "Review-Agent")
    html = owner_console.get("/inbox/").content.decode()
    assert "Docs-Agent + 2 others want Notion" in html
    assert "Design-Agent + 1 other want Figma" in html
    assert "Planner-Agent wants Jira" in html
    assert html.index("want Notion") < html.index("want Figma") < html.index("wants Jira")
    notion = html[html.index("want Notion") : html.index("want Figma")]
    assert "<details" in notion, "the reasons are collapsed"
    for backer in ("Docs-Agent", "Wiki-Agent", "Support-Agent"):
        assert f"<strong>{backer}</strong>: {backer} needs Notion." in notion
    assert 'href="https://notion.so' in notion


def test_a_tool_suggestion_links_to_creating_the_tool_from_it(owner_console, suggest_tool):
    suggestion = suggest_tool("Notion", "Docs-Agent")
    html = owner_console.get("/inbox/").content.decode()
    assert f'href="/tools/new?suggestion={suggestion.id}"' in html


def test_guide_suggestions_show_the_learned_text_why_and_versions(
    owner_console, tool, suggest_guide, operator
):
    from catalog.services import tool_guide_update

    suggest_guide(tool, "Use the PLATFORM team key for infra bugs.", "Infra-Agent", "Oncall-Agent")
    tool_guide_update(tool=tool, actor=operator, content="Team key: PLATFORM. Labels: bug.")
    html = owner_console.get("/inbox/").content.decode()
    assert "Use the PLATFORM team key for infra bugs." in html
    assert "<strong>Oncall-Agent</strong>: Oncall-Agent lost an hour." in html
    assert "Written against version 1; the guide is at version 2" in html
    assert "guide changed since" in html
    assert f'href="/tools/{tool.id}/guide#suggestion-' in html, "edit before accepting opens the guide editor"


def test_an_empty_inbox_says_so(owner_console):
    html = owner_console.get("/inbox/").content.decode()
    assert "No access requests waiting." in html
    assert "No tool suggestions waiting." in html
    assert "No usage-guide suggestions waiting." in html


def test_the_inbox_shows_only_the_active_organization(owner_console, other_org, make_request, tool):
    make_request(tool, reason="Mine to decide, clearly.")
    foreign_tool = factories.make_tool(other_org, "Globex Tool")
    stranger = factories.make_agent(other_org, "Globex-Agent").agent
    from grants.services import grant_request

    grant_request(agent=stranger, tool=foreign_tool, reason="Not your business at all.")
    html = owner_console.get("/inbox/").content.decode()
    assert "Mine to decide, clearly." in html
    assert "Globex-Agent" not in html


# --- the nav count -------------------------------------------------------------------------------


def count(client) -> str:
    response = client.get("/inbox/count")
    assert response.status_code == 200
    return str(response.content.decode())


def test_the_count_is_empty_for_zero(owner_console):
    assert count(owner_console) == ""


def test_the_count_is_what_the_viewer_can_act_on(
    owner, approver, auditor, tool, make_request, suggest_tool, suggest_guide
):
    make_request(tool)
    make_request(tool)
    suggest_tool("Notion", "Docs-Agent", "Wiki-Agent")
    suggest_guide(tool, "Close bugs with a commit link.", "Infra-Agent")
    assert count(console_for(owner)) == "4", "2 requests + 1 tool suggestion + 1 guide suggestion"
    assert count(console_for(approver)) == "2", "an approver acts on requests only"
    assert count(console_for(auditor)) == "", "an auditor acts on nothing"


def test_the_count_is_at_most_three_count_queries(owner_console, tool, make_request, suggest_tool):
    for _ in range(3):
        make_request(tool)
    suggest_tool("Notion", "Docs-Agent")
    owner_console.get("/inbox/count")  # warm the session
    with CaptureQueriesContext(connection) as queries:
        assert owner_console.get("/inbox/count").content == b"4"
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) <= 3
    assert len(queries.captured_queries) <= 6, [q["sql"] for q in queries.captured_queries]


# --- no N+1 --------------------------------------------------------------------------------------


def fill(org, start: int, n: int, suggest_tool, suggest_guide) -> None:
    from grants.services import grant_request

    shared = factories.make_tool(org)
    per_agent = factories.make_tool(org, mode=CredentialMode.PER_AGENT)
    for i in range(start, start + n):
        agent = factories.make_agent(org).agent
        grant_request(agent=agent, tool=shared if i % 2 else per_agent, reason="Needed for the release.")
        suggest_tool(f"Wanted {factories.new_credential('t')[:12]}", *[f"Backer-{i}-{j}" for j in range(3)])
        suggest_guide(shared, f"Lesson number {i} about the tool.", f"Teacher-{i}-a", f"Teacher-{i}-b")


def queries_for_inbox(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/inbox/")
        assert response.status_code == 200
    return len(queries.captured_queries)


def test_the_page_query_count_does_not_grow_with_the_items(org, owner, suggest_tool, suggest_guide):
    client = console_for(owner)
    fill(org, 0, 2, suggest_tool, suggest_guide)
    few = queries_for_inbox(client)
    fill(org, 2, 10, suggest_tool, suggest_guide)
    many = queries_for_inbox(client)
    html = client.get("/inbox/").content.decode()
    assert len(re.findall(r'id="grant-', html)) == 12
    assert len(re.findall(r'id="tool-suggestion-', html)) == 12
    assert len(re.findall(r'id="guide-suggestion-', html)) == 12
    assert many == few
    assert many <= 10, many
