"""The usage-guide editor: versions, history, diff (escaped), restore, and agents' suggestions."""

from __future__ import annotations

import re

import pytest

from audit.models import Action
from catalog.models import GuideSuggestion, GuideVersion, SuggestionStatus
from catalog.services import guide_suggestion_dismiss, tool_guide_update
from tests import factories
from tests.console.tools.support import agent_client, console_for, page, with_access

pytestmark = pytest.mark.django_db


def versions(tool) -> list[tuple[int, str]]:
    return list(GuideVersion.objects.filter(tool=tool).order_by("version").values_list("version", "content"))


def test_readers_see_the_guide_and_its_history_without_an_editor(tool, auditor):
    html = page(console_for(auditor), f"/tools/{tool.id}/guide")
    assert '<pre class="guide-text">Team key: PLATFORM.</pre>' in html
    assert "<textarea" not in html
    assert f'href="/tools/{tool.id}/guide/versions/1"' in html


def test_saving_the_guide_makes_a_new_version_that_agents_receive(org, tool, admin_member, audit_log):
    agent, api = agent_client(org, "Onboarding-Agent")
    with_access(agent, tool)
    audit_log.mark()
    client = console_for(admin_member)
    assert 'name="content"' in page(client, f"/tools/{tool.id}/guide")
    response = client.post(
        f"/tools/{tool.id}/guide/update", {"content": "Team key: PLATFORM.\r\nLabel: agent."}
    )
    assert (response.status_code, response["Location"]) == (302, f"/tools/{tool.id}/guide")
    assert versions(tool) == [(1, "Team key: PLATFORM."), (2, "Team key: PLATFORM.\nLabel: agent.")]
    assert audit_log.actions() == [Action.TOOL_GUIDE_UPDATED]
    assert audit_log.new()[0].metadata == {"version": 2}
    assert api.credentials(tool.id).json()["instructions"] == "Team key: PLATFORM.\nLabel: agent."

    history = page(client, f"/tools/{tool.id}/guide")
    assert "saved as version 2" in history
    assert admin_member.user.email in history
    assert re.search(r"Version 2</a> <span class=\"pill ok\">current</span>", history)


def test_saving_the_same_text_makes_no_version(tool, owner, audit_log):
    response = console_for(owner).post(f"/tools/{tool.id}/guide/update", {"content": "Team key: PLATFORM."})
    assert response.status_code == 302
    assert len(versions(tool)) == 1
    assert audit_log.actions() == []


def test_a_guide_over_20000_characters_is_refused(tool, owner, audit_log):
    response = console_for(owner).post(f"/tools/{tool.id}/guide/update", {"content": "x" * 20001})
    assert response.status_code == 400
    assert "at most 20,000 characters" in response.content.decode()
    assert len(versions(tool)) == 1
    assert audit_log.actions() == []


def test_the_diff_against_the_current_version_is_escaped(tool, owner, operator):
    tool_guide_update(
        tool=tool, actor=operator, content="Team key: PLATFORM.\n<script>alert('x')</script>\n-- signed"
    )
    html = page(console_for(owner), f"/tools/{tool.id}/guide/versions/1")
    diff = html[html.index('<div class="diff"') : html.index("</div>", html.index('<div class="diff"'))]
    assert '<span class="add">+&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</span>' in diff
    assert '<span class="add">+-- signed</span>' in diff
    assert '<span class="ctx"> Team key: PLATFORM.</span>' in diff
    assert "<script>" not in html
    assert "Restore version 1" in html

    current = page(console_for(owner), f"/tools/{tool.id}/guide/versions/2")
    assert "&lt;script&gt;" in current
    assert "<script>alert" not in current
    assert '<div class="diff"' not in current, "the current version has nothing to compare with"


def test_a_removed_line_is_marked_deleted(tool, owner, operator):
    tool_guide_update(tool=tool, actor=operator, content="Team key: INFRA.")
    html = page(console_for(owner), f"/tools/{tool.id}/guide/versions/1")
    assert '<span class="del">-Team key: PLATFORM.</span>' in html
    assert '<span class="add">+Team key: INFRA.</span>' in html
    assert '<span class="hunk">@@ -1 +1 @@</span>' in html


def test_restoring_an_old_version_makes_it_the_newest(tool, admin_member, operator, audit_log):
    tool_guide_update(tool=tool, actor=operator, content="A mistake.")
    audit_log.mark()
    client = console_for(admin_member)
    response = client.post(f"/tools/{tool.id}/guide/versions/1/restore")
    assert (response.status_code, response["Location"]) == (302, f"/tools/{tool.id}/guide")
    assert versions(tool) == [(1, "Team key: PLATFORM."), (2, "A mistake."), (3, "Team key: PLATFORM.")]
    tool.refresh_from_db()
    assert (tool.usage_guide, tool.current_guide_version) == ("Team key: PLATFORM.", 3)
    assert audit_log.actions() == [Action.TOOL_GUIDE_UPDATED]
    assert audit_log.new()[0].metadata == {"version": 3, "restored_from": 1}
    assert "Version 1 restored as version 3." in page(client, f"/tools/{tool.id}/guide")

    audit_log.mark()
    client.post(f"/tools/{tool.id}/guide/versions/1/restore")  # the same text as now: nothing to do
    assert len(versions(tool)) == 3
    assert audit_log.actions() == []


def test_unknown_versions_are_not_found(tool, owner):
    client = console_for(owner)
    assert client.get(f"/tools/{tool.id}/guide/versions/9").status_code == 404
    assert client.post(f"/tools/{tool.id}/guide/versions/9/restore").status_code == 404


# --- suggestions ----------------------------------------------------------------------------------


@pytest.fixture
def suggested(org, tool):
    agent, api = agent_client(org, "Onboarding-Agent")
    with_access(agent, tool)
    assert api.suggest_instructions(tool.id, "Bugs go to PLATFORM, features to PRODUCT.").status_code == 201
    return GuideSuggestion.objects.get(tool=tool), api


def test_a_suggestion_comes_with_the_text_to_accept_prefilled(tool, owner, suggested):
    suggestion, _ = suggested
    html = page(console_for(owner), f"/tools/{tool.id}/guide")
    assert f'id="suggestion-{suggestion.id}"' in html
    assert "Team key: PLATFORM.\n\n- Bugs go to PLATFORM, features to PRODUCT.</textarea>" in html
    assert "Saves the next agent an hour." in html, "the agent's why"
    assert f"/tools/{tool.id}/guide/suggestions/{suggestion.id}/accept" in html


def test_accepting_publishes_the_text_the_admin_edited(tool, admin_member, suggested, audit_log):
    suggestion, api = suggested
    audit_log.mark()
    edited = "Team key: PLATFORM.\n\n- Bugs go to PLATFORM; features go to PRODUCT (ask first)."
    response = console_for(admin_member).post(
        f"/tools/{tool.id}/guide/suggestions/{suggestion.id}/accept",
        {"content": edited.replace("\n", "\r\n")},
    )
    assert response.status_code == 302
    suggestion.refresh_from_db()
    assert suggestion.status == SuggestionStatus.ACCEPTED
    assert versions(tool)[-1] == (2, edited)
    assert audit_log.actions() == [Action.TOOL_GUIDE_UPDATED, Action.GUIDE_SUGGESTION_ACCEPTED]
    assert api.credentials(tool.id).json()["instructions"] == edited


def test_accepting_a_decided_suggestion_is_refused(tool, owner, operator, suggested, audit_log):
    suggestion, _ = suggested
    guide_suggestion_dismiss(suggestion=suggestion, actor=operator)
    audit_log.mark()
    client = console_for(owner)
    response = client.post(
        f"/tools/{tool.id}/guide/suggestions/{suggestion.id}/accept", {"content": "Anything."}, follow=True
    )
    assert "This suggestion is no longer pending." in response.content.decode()
    assert len(versions(tool)) == 1
    assert audit_log.actions() == []


def test_dismissing_a_suggestion_keeps_agents_from_repeating_it(tool, owner, suggested, audit_log):
    suggestion, api = suggested
    audit_log.mark()
    response = console_for(owner).post(
        f"/tools/{tool.id}/guide/suggestions/{suggestion.id}/dismiss", {"reason": "We keep one team."}
    )
    assert response.status_code == 302
    suggestion.refresh_from_db()
    assert (suggestion.status, suggestion.dismissal_reason) == (
        SuggestionStatus.DISMISSED,
        "We keep one team.",
    )
    assert audit_log.actions() == [Action.GUIDE_SUGGESTION_DISMISSED]
    assert api.suggest_instructions(tool.id, "Bugs go to PLATFORM, features to PRODUCT.").status_code == 409


def test_a_suggestion_is_only_reachable_through_its_own_tool(org, tool, owner, suggested, audit_log):
    suggestion, _ = suggested
    other = factories.make_tool(org, "Jira")
    audit_log.mark()
    client = console_for(owner)
    assert (
        client.post(
            f"/tools/{other.id}/guide/suggestions/{suggestion.id}/accept", {"content": "x"}
        ).status_code
        == 404
    )
    assert client.post(f"/tools/{other.id}/guide/suggestions/{suggestion.id}/dismiss").status_code == 404
    assert audit_log.actions() == []
