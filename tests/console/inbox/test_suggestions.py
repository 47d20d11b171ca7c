"""Tool and usage-guide suggestions decided from the inbox."""

from __future__ import annotations

import pytest

from audit.models import Action
from catalog.models import GuideVersion, SuggestionStatus
from tests.console.inbox.conftest import console_for

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def page(client) -> str:
    return str(client.get("/inbox/").content.decode())


def test_dismissing_a_tool_suggestion_starts_the_24_hour_cooldown(owner, suggest_tool, org, audit_log):
    from tests import factories
    from tests.support.http import AgentClient

    suggestion = suggest_tool("Notion", "Docs-Agent", "Wiki-Agent")
    client = console_for(owner)
    audit_log.mark()
    response = client.post(
        f"/inbox/tool-suggestions/{suggestion.id}/dismiss", {"reason": "We use Confluence for docs."}
    )
    assert response.status_code == 302
    assert response["Location"] == "/inbox/"
    suggestion.refresh_from_db()
    assert suggestion.status == SuggestionStatus.DISMISSED
    assert suggestion.dismissal_reason == "We use Confluence for docs."
    assert suggestion.decided_by == owner.user
    assert audit_log.actions() == [Action.TOOL_SUGGESTION_DISMISSED]
    html = page(client)
    assert "Notion: dismissed by you. Agents cannot suggest it again for 24 hours." in html
    assert "want Notion" not in html

    newcomer = AgentClient(factories.make_agent(org, "Late-Agent").key.plaintext)
    again = newcomer.suggest("Notion")
    assert again.status_code == 409
    assert "retry_after" in again.json()


def test_dismissing_without_a_reason_over_htmx(owner, suggest_tool, audit_log):
    suggestion = suggest_tool("Notion", "Docs-Agent")
    audit_log.mark()
    response = console_for(owner).post(f"/inbox/tool-suggestions/{suggestion.id}/dismiss", headers=HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert f'id="tool-suggestion-{suggestion.id}"' in html
    assert "dismissed by you" in html
    assert 'hx-swap-oob="innerHTML"' in html
    assert audit_log.actions() == [Action.TOOL_SUGGESTION_DISMISSED]


def test_dismissing_twice_shows_the_conflict(owner, admin_member, suggest_tool, audit_log):
    suggestion = suggest_tool("Notion", "Docs-Agent")
    console_for(admin_member).post(f"/inbox/tool-suggestions/{suggestion.id}/dismiss")
    audit_log.mark()
    client = console_for(owner)
    response = client.post(f"/inbox/tool-suggestions/{suggestion.id}/dismiss")
    assert response.status_code == 302
    assert "This suggestion is no longer pending." in page(client)
    response = client.post(f"/inbox/tool-suggestions/{suggestion.id}/dismiss", headers=HTMX)
    assert response.status_code == 200
    assert "This suggestion is no longer pending." in response.content.decode()
    assert audit_log.actions() == []


def test_accepting_a_guide_suggestion_appends_it_as_a_bullet(owner, tool, suggest_guide, audit_log):
    suggestion = suggest_guide(tool, "Bugs go to the BUG project, not PLATFORM.", "Infra-Agent")
    client = console_for(owner)
    audit_log.mark()
    response = client.post(f"/inbox/guide-suggestions/{suggestion.id}/accept")
    assert response.status_code == 302
    tool.refresh_from_db()
    assert tool.usage_guide == "Team key: PLATFORM.\n\n- Bugs go to the BUG project, not PLATFORM."
    assert tool.current_guide_version == 2
    assert GuideVersion.objects.get(tool=tool, version=2).content == tool.usage_guide
    suggestion.refresh_from_db()
    assert suggestion.status == SuggestionStatus.ACCEPTED
    assert audit_log.actions() == [Action.TOOL_GUIDE_UPDATED, Action.GUIDE_SUGGESTION_ACCEPTED]
    assert "suggestion accepted by you as version 2." in page(client)


def test_accepting_into_an_empty_guide_starts_it(owner, org, suggest_guide):
    from tests import factories

    bare = factories.make_tool(org, "Sentry")
    suggestion = suggest_guide(bare, "Filter by the prod environment.", "Ops-Agent")
    response = console_for(owner).post(f"/inbox/guide-suggestions/{suggestion.id}/accept", headers=HTMX)
    assert response.status_code == 200
    assert "as version 2" in response.content.decode()
    bare.refresh_from_db()
    assert bare.usage_guide == "- Filter by the prod environment."


def test_accepting_a_guide_suggestion_that_would_overflow_keeps_it_with_the_problem(
    owner, tool, suggest_guide, operator, audit_log
):
    from catalog.services import tool_guide_update

    suggestion = suggest_guide(tool, "Always link the incident.", "Infra-Agent")
    tool_guide_update(tool=tool, actor=operator, content="x" * 19990)
    audit_log.mark()
    response = console_for(owner).post(f"/inbox/guide-suggestions/{suggestion.id}/accept", headers=HTMX)
    html = response.content.decode()
    assert f'<li class="panel inbox-item" id="guide-suggestion-{suggestion.id}">' in html
    assert "The usage guide is longer than 20,000 characters." in html
    suggestion.refresh_from_db()
    assert suggestion.status == SuggestionStatus.PENDING
    assert audit_log.actions() == []


def test_dismissing_a_guide_suggestion(owner, tool, suggest_guide, audit_log):
    suggestion = suggest_guide(tool, "Always link the incident.", "Infra-Agent")
    client = console_for(owner)
    audit_log.mark()
    response = client.post(
        f"/inbox/guide-suggestions/{suggestion.id}/dismiss", {"reason": "Already in the runbook."}
    )
    assert response.status_code == 302
    suggestion.refresh_from_db()
    assert suggestion.status == SuggestionStatus.DISMISSED
    assert suggestion.dismissal_reason == "Already in the runbook."
    assert audit_log.actions() == [Action.GUIDE_SUGGESTION_DISMISSED]
    tool.refresh_from_db()
    assert tool.current_guide_version == 1


def test_deciding_a_guide_suggestion_twice_shows_the_conflict(owner, tool, suggest_guide, audit_log):
    suggestion = suggest_guide(tool, "Always link the incident.", "Infra-Agent")
    client = console_for(owner)
    client.post(f"/inbox/guide-suggestions/{suggestion.id}/dismiss")
    audit_log.mark()
    response = client.post(f"/inbox/guide-suggestions/{suggestion.id}/accept", headers=HTMX)
    assert response.status_code == 200
    assert "This suggestion is no longer pending." in response.content.decode()
    assert audit_log.actions() == []
    tool.refresh_from_db()
    assert tool.current_guide_version == 1
