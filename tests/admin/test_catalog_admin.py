"""Tools, usage guides and suggestions in the operator console."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from accounts.models import Role
from audit.models import Action
from catalog.models import GuideSuggestion, GuideVersion, SuggestionStatus, Tool, ToolSuggestion
from catalog.services import tool_suggest
from grants.models import AccessGrant, GrantStatus
from grants.services import grant_approve, grant_assign, grant_request, guide_suggest_as_agent
from tests import factories
from tests.admin.conftest import GUIDE_SUGGESTIONS, SUGGESTIONS, TOOLS, action, form_data, html, messages_of
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db


def _new_tool_fields(org, **overrides):
    fields = {
        "org": str(org.pk),
        "name": "Sentry",
        "description": "Error tracking.",
        "url": "https://sentry.io",
        "auth_type": "api_key",
        "credential_mode": "shared",
        "credential": "",
        "usage_guide": "Project: backend.",
        "config_key": "",
    }
    return {**fields, **overrides}


# --- creating tools ------------------------------------------------------------------------------


def test_creating_a_tool_stores_its_credential_write_only(org, issued, console, audit_log):
    credential = factories.new_credential("sentry")
    audit_log.mark()

    response = console.post(f"{TOOLS}add/", _new_tool_fields(org, credential=credential))

    assert response.status_code == 302, messages_of(response)
    assert audit_log.actions() == [Action.TOOL_CREATED]
    tool = Tool.objects.get(name="Sentry")
    assert tool.secret_id is not None
    assert tool.config_key == "sentry"
    assert tool.guide_versions.count() == 1
    for page in (console.get(TOOLS), console.get(f"{TOOLS}{tool.pk}/change/")):
        assert page.status_code == 200
        assert credential not in html(page)
        assert ">set<" in html(page)
    grant_assign(agent=issued.agent, tool=tool, actor=factories.OPERATOR)
    assert AgentClient(issued.key.plaintext).credentials(tool.id).json()["credential"] == credential


def test_the_add_page_takes_initial_values_from_the_query_string(org, console):
    page = console.get(
        f"{TOOLS}add/?" + urlencode({"org": org.pk, "name": "Linear", "url": "https://linear.app"})
    )

    assert page.status_code == 200
    data = form_data(page)
    assert (data["org"], data["name"], data["url"]) == (str(org.pk), "Linear", "https://linear.app")
    assert 'type="password" name="credential"' in html(page)


def test_a_refused_tool_is_an_error_message_and_keeps_the_form(org, tool, console, audit_log):
    audit_log.mark()

    response = console.post(f"{TOOLS}add/", _new_tool_fields(org, name="Linear", credential="x" * 20))

    assert response.status_code == 200
    assert "A tool named 'Linear' already exists in this organization." in messages_of(response)[0]
    assert audit_log.actions() == []
    data = form_data(response)
    assert data["name"] == "Linear"
    assert data["credential"] == ""  # write-only, even when the form comes back


def test_a_suggestion_links_to_a_prefilled_add_page_and_the_new_tool_opens_its_backers_requests(
    org, console, audit_log
):
    first = factories.make_agent(org, "Onboarding-Agent").agent
    second = factories.make_agent(org, "Billing-Agent").agent
    tool_suggest(
        agent=first, name="Linear", url="https://linear.app/docs", reason="The team tracks work there."
    )
    tool_suggest(agent=second, name="linear app", url="http://www.linear.app", reason="Invoices link to it.")
    suggestion = ToolSuggestion.objects.get()

    listing = console.get(SUGGESTIONS)
    assert listing.status_code == 200
    create_link = f"{TOOLS}add/?" + urlencode({"org": str(org.pk), "name": "Linear", "url": suggestion.url})
    assert create_link.replace("&", "&amp;") in html(listing)
    assert '<td class="field-backers">2</td>' in html(listing)

    prefilled = form_data(console.get(create_link))
    audit_log.mark()
    response = console.post(create_link, {**prefilled, "credential": factories.new_credential()})

    assert response.status_code == 302, messages_of(response)
    assert audit_log.actions() == [
        Action.TOOL_CREATED,
        Action.TOOL_SUGGESTION_ACCEPTED,
        Action.GRANT_REQUESTED,
        Action.GRANT_REQUESTED,
    ]
    assert any("answers 1 suggestion(s)" in m for m in messages_of(response))
    tool = Tool.objects.get(name="Linear")
    assert set(AccessGrant.objects.filter(tool=tool).values_list("status", flat=True)) == {
        GrantStatus.PENDING
    }
    assert "Added as Linear" in html(console.get(SUGGESTIONS))


# --- changing tools ------------------------------------------------------------------------------


def test_each_change_goes_through_its_own_service(issued, tool, console, audit_log):
    api = AgentClient(issued.key.plaintext)
    grant_assign(agent=issued.agent, tool=tool, actor=factories.OPERATOR)
    change = f"{TOOLS}{tool.pk}/change/"

    audit_log.mark()
    unchanged = console.post(change, form_data(console.get(change)))
    assert unchanged.status_code == 302, messages_of(unchanged)
    assert audit_log.actions() == []

    audit_log.mark()
    renamed = console.post(change, {**form_data(console.get(change)), "name": "Linear (prod)"})
    assert renamed.status_code == 302
    assert audit_log.actions() == [Action.TOOL_UPDATED]
    assert audit_log.new()[0].metadata == {"fields": ["name"]}

    new_credential = factories.new_credential("lin_rotated")
    audit_log.mark()
    rotated = console.post(change, {**form_data(console.get(change)), "credential": new_credential})
    assert rotated.status_code == 302
    assert audit_log.actions() == [Action.TOOL_CREDENTIAL_ROTATED]
    assert api.credentials(tool.id).json()["credential"] == new_credential
    assert new_credential not in html(console.get(change))

    audit_log.mark()
    guide = "Team key: PLATFORM.\r\nLabel every issue with `agent`."
    edited = console.post(change, {**form_data(console.get(change)), "usage_guide": guide})
    assert edited.status_code == 302
    assert audit_log.actions() == [Action.TOOL_GUIDE_UPDATED]
    tool.refresh_from_db()
    assert tool.current_guide_version == 2
    assert tool.usage_guide == "Team key: PLATFORM.\nLabel every issue with `agent`."
    assert list(GuideVersion.objects.filter(tool=tool).values_list("version", flat=True)) == [2, 1]
    page = html(console.get(change))
    assert "Usage guide history" in page
    assert "Label every issue with `agent`." in page


def test_a_refused_change_saves_nothing(tool, per_agent_tool, console, audit_log):
    change = f"{TOOLS}{tool.pk}/change/"
    audit_log.mark()

    response = console.post(
        change,
        {**form_data(console.get(change)), "name": "GitHub", "credential": factories.new_credential()},
    )

    assert response.status_code == 200
    assert any("A tool named 'GitHub' already exists" in m for m in messages_of(response))
    assert audit_log.actions() == []
    tool.refresh_from_db()
    assert tool.name == "Linear"


def test_a_per_agent_tool_has_no_credential_to_enter(per_agent_tool, console):
    page = html(console.get(f"{TOOLS}{per_agent_tool.pk}/change/"))
    assert 'name="credential"' not in page
    assert "per agent (held by each approved grant)" in page


def test_without_tool_rights_the_tool_page_is_read_only(org, tool, staff_member, audit_log):
    approver = staff_member((org, Role.APPROVER))
    page = approver.get(f"{TOOLS}{tool.pk}/change/")
    assert page.status_code == 200
    assert 'name="credential"' not in html(page)
    assert approver.get(f"{TOOLS}add/").status_code == 403
    assert approver.post(f"{TOOLS}{tool.pk}/change/", {"name": "Mine"}).status_code == 403
    assert audit_log.actions() == []


# --- suggestions ---------------------------------------------------------------------------------


def test_the_suggestion_list_counts_backers_without_n_plus_1(org, console, django_assert_max_num_queries):
    agents = [factories.make_agent(org, f"agent-{n}").agent for n in range(3)]
    for n in range(10):
        for agent in agents:
            tool_suggest(agent=agent, name=f"Tool {n}", url=f"https://tool{n}.example", reason="We need it.")

    with django_assert_max_num_queries(10):
        response = console.get(SUGGESTIONS)

    assert response.status_code == 200
    assert html(response).count('<td class="field-backers">3</td>') == 10


def test_dismissing_tool_suggestions(org, agent, console, audit_log):
    suggestion = tool_suggest(agent=agent, name="Notion", url="https://notion.so", reason="Docs.").suggestion
    confirm = console.post(SUGGESTIONS, action("dismiss_selected", suggestion.pk))
    assert confirm.status_code == 200
    assert "Dismiss tool suggestions" in html(confirm)
    audit_log.mark()

    response = console.post(
        SUGGESTIONS, action("dismiss_selected", suggestion.pk, reason="We use Confluence.", apply="1")
    )

    assert response.status_code == 302
    assert audit_log.actions() == [Action.TOOL_SUGGESTION_DISMISSED]
    suggestion.refresh_from_db()
    assert (suggestion.status, suggestion.dismissal_reason) == (
        SuggestionStatus.DISMISSED,
        "We use Confluence.",
    )

    audit_log.mark()
    again = console.post(SUGGESTIONS, action("dismiss_selected", suggestion.pk, reason="", apply="1"))
    assert any("This suggestion is no longer pending." in m for m in messages_of(again))
    assert audit_log.actions() == []


def test_dismissing_guide_suggestions(agent, tool, console, audit_log):
    grant_approve(
        grant=grant_request(agent=agent, tool=tool, reason="Filing bugs."), reviewer=factories.OPERATOR
    )
    guide_suggest_as_agent(
        agent=agent, tool=tool, learned="Put issues in team PLATFORM.", why="It saves time."
    )
    suggestion = GuideSuggestion.objects.get()
    page = console.get(f"{GUIDE_SUGGESTIONS}{suggestion.pk}/change/")
    assert page.status_code == 200
    assert "Edit the usage guide of Linear" in html(page)
    assert agent.name in html(page)  # the backers inline
    audit_log.mark()

    response = console.post(
        GUIDE_SUGGESTIONS, action("dismiss_selected", suggestion.pk, reason="", apply="1")
    )

    assert response.status_code == 302
    assert audit_log.actions() == [Action.GUIDE_SUGGESTION_DISMISSED]
    assert GuideSuggestion.objects.get().status == SuggestionStatus.DISMISSED


def test_dismissing_needs_tool_rights(org, agent, staff_member, audit_log):
    suggestion = tool_suggest(agent=agent, name="Notion", url="https://notion.so", reason="Docs.").suggestion
    approver = staff_member((org, Role.APPROVER))
    audit_log.mark()

    # The action is not offered to a role without tool rights, and posting it anyway does nothing.
    assert "dismiss_selected" not in html(approver.get(SUGGESTIONS))
    response = approver.post(SUGGESTIONS, action("dismiss_selected", suggestion.pk, reason="", apply="1"))

    assert response.status_code == 200
    assert audit_log.actions() == []
    assert ToolSuggestion.objects.get().status == SuggestionStatus.PENDING
