"""Creating a tool: from scratch (shared or per-agent) or from a suggestion, which opens the backers' requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from audit.models import Action
from catalog.models import CredentialMode, SuggestionStatus, Tool, ToolSuggestion
from catalog.services import tool_suggestion_dismiss
from tests import factories
from tests.console.tools.support import agent_client, console_for, page, with_access
from tests.support.http import access_of

pytestmark = pytest.mark.django_db


def form(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "Linear",
        "url": "https://linear.app",
        "description": "Issue tracker.",
        "auth_type": "api_key",
        "credential_mode": "shared",
        "credential": "",
        "usage_guide": "Team key: PLATFORM.",
        "config_key": "",
        "credential_expires_on": "",
    }
    data.update(overrides)
    return data


def test_create_a_shared_tool_with_its_credential(org, admin_member, audit_log):
    secret = factories.new_credential("lin_api")
    client = console_for(admin_member)
    response = client.post("/tools/new", form(credential=secret))
    tool = Tool.objects.get(org=org)
    assert response.status_code == 302
    assert response["Location"] == f"/tools/{tool.id}/"
    assert (tool.name, tool.url, tool.credential_mode, tool.usage_guide) == (
        "Linear",
        "https://linear.app/",
        CredentialMode.SHARED,
        "Team key: PLATFORM.",
    )
    assert tool.secret_id is not None
    assert tool.credential_rotated_at is not None
    assert audit_log.actions() == [Action.TOOL_CREATED]
    [event] = audit_log.new()
    assert event.actor_id == str(admin_member.user.pk)
    assert secret not in str(event.metadata)

    shown = client.get(response["Location"], follow=True).content.decode()
    assert "Linear added to the catalog." in shown
    assert secret not in shown
    assert secret not in page(client, "/tools/")

    agent, api = agent_client(org, "Vendor-Check")
    with_access(agent, tool)
    assert api.credentials(tool.id).json()["credential"] == secret


def test_create_a_per_agent_tool(org, owner, audit_log):
    response = console_for(owner).post(
        "/tools/new",
        form(name="GitHub", url="https://github.com", credential_mode="per_agent", auth_type="oauth_token"),
    )
    assert response.status_code == 302
    tool = Tool.objects.get(org=org)
    assert (tool.credential_mode, tool.auth_type, tool.secret_id) == (
        CredentialMode.PER_AGENT,
        "oauth_token",
        None,
    )
    assert audit_log.actions() == [Action.TOOL_CREATED]


def test_a_per_agent_tool_refuses_a_credential_and_never_echoes_it(org, owner, audit_log):
    secret = factories.new_credential("ghp")
    response = console_for(owner).post("/tools/new", form(credential_mode="per_agent", credential=secret))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Per-agent tools take no credential here" in html
    assert secret not in html
    assert not Tool.objects.exists()
    assert audit_log.actions() == []


def test_a_shared_tool_needs_its_credential_unless_it_comes_later(org, owner, audit_log):
    client = console_for(owner)
    refused = client.post("/tools/new", form())
    assert refused.status_code == 200
    assert "Enter the credential, or tick" in refused.content.decode()
    assert not Tool.objects.exists()

    response = client.post("/tools/new", form(credential_later="on"))
    assert response.status_code == 302
    tool = Tool.objects.get()
    assert tool.secret_id is None
    assert tool.credential_rotated_at is None
    assert "no credential" in page(client, response["Location"])
    assert audit_log.actions() == [Action.TOOL_CREATED]


def test_expiry_date_and_config_key_are_recorded(org, owner):
    day = (timezone.now() + timedelta(days=60)).date()
    console_for(owner).post(
        "/tools/new",
        form(
            credential=factories.new_credential(),
            credential_expires_on=day.isoformat(),
            config_key="linear-prod",
        ),
    )
    tool = Tool.objects.get()
    assert tool.config_key == "linear-prod"
    assert tool.credential_expires_at == datetime(day.year, day.month, day.day, tzinfo=UTC)


def test_an_expiry_in_the_past_is_refused(org, owner):
    yesterday = (timezone.now() - timedelta(days=1)).date().isoformat()
    response = console_for(owner).post(
        "/tools/new", form(credential=factories.new_credential(), credential_expires_on=yesterday)
    )
    assert "The expiry date is in the past." in response.content.decode()
    assert not Tool.objects.exists()


def test_a_refusal_from_the_service_is_shown_and_the_credential_is_not_echoed(org, owner, audit_log):
    secret = factories.new_credential("lin_api")
    response = console_for(owner).post("/tools/new", form(url="ftp://linear.app", credential=secret))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Enter a valid HTTP or HTTPS URL." in html
    assert secret not in html
    assert 'value="Linear"' in html, "the rest of the form is kept"
    assert not Tool.objects.exists()
    assert audit_log.actions() == []


def test_a_taken_name_is_refused(tool, owner, audit_log):
    response = console_for(owner).post(
        "/tools/new", form(name="linear", credential=factories.new_credential())
    )
    assert "A tool named &#x27;linear&#x27; already exists" in response.content.decode()
    assert Tool.objects.count() == 1
    assert audit_log.actions() == []


# --- from a suggestion ----------------------------------------------------------------------------


def suggested_by_three(org):
    clients = []
    for name in ("Onboarding-Agent", "Billing-Agent", "Support-Agent"):
        _, api = agent_client(org, name)
        assert api.suggest("Linear", f"{name} files bugs there.", url="https://linear.app").status_code == 201
        clients.append(api)
    return ToolSuggestion.objects.get(org=org), clients


def test_the_form_from_a_suggestion_is_prefilled_and_names_the_backers(org, admin_member):
    suggestion, _ = suggested_by_three(org)
    html = page(console_for(admin_member), f"/tools/new?suggestion={suggestion.id}")
    assert "Onboarding-Agent + 2 others" in html
    assert 'value="Linear"' in html
    assert 'value="https://linear.app/"' in html
    assert "gets a pending access request" in html
    assert "Billing-Agent files bugs there." in html


def test_adding_a_suggested_tool_opens_a_pending_request_for_every_backer(org, admin_member, audit_log):
    suggestion, agents = suggested_by_three(org)
    audit_log.mark()
    response = console_for(admin_member).post(
        f"/tools/new?suggestion={suggestion.id}",
        form(url="https://linear.app/", credential=factories.new_credential()),
    )
    assert response.status_code == 302
    tool = Tool.objects.get(org=org)
    for api in agents:
        assert access_of(api.tools(), tool.id) == "pending"
    suggestion.refresh_from_db()
    assert (suggestion.status, suggestion.converted_tool_id) == (SuggestionStatus.ACCEPTED, tool.id)
    assert audit_log.actions() == [
        Action.TOOL_CREATED,
        Action.TOOL_SUGGESTION_ACCEPTED,
        Action.GRANT_REQUESTED,
        Action.GRANT_REQUESTED,
        Action.GRANT_REQUESTED,
    ]
    landed = console_for(admin_member).get(response["Location"])
    assert "3 pending requests" in landed.content.decode()


def test_a_suggestion_is_answered_even_when_the_admin_renames_the_tool(org, owner, audit_log):
    _, api = agent_client(org, "Onboarding-Agent")
    api.suggest("Linear issues", "We track bugs there.")
    suggestion = ToolSuggestion.objects.get()
    audit_log.mark()
    client = console_for(owner)
    response = client.post(
        f"/tools/new?suggestion={suggestion.id}",
        form(name="Linear", url="https://linear.app", credential=factories.new_credential()),
    )
    assert response.status_code == 302
    tool = Tool.objects.get()
    assert access_of(api.tools(), tool.id) == "pending"
    suggestion.refresh_from_db()
    assert suggestion.status == SuggestionStatus.ACCEPTED
    assert audit_log.actions() == [
        Action.TOOL_CREATED,
        Action.TOOL_SUGGESTION_ACCEPTED,
        Action.GRANT_REQUESTED,
    ]


def test_only_a_pending_suggestion_of_the_active_organization_opens_the_form(org, other_org, owner, operator):
    _, api = agent_client(other_org, "Globex-Agent")
    api.suggest("Jira", "Globex tracks work there.")
    theirs = ToolSuggestion.objects.get(org=other_org)
    client = console_for(owner)
    assert client.get(f"/tools/new?suggestion={theirs.id}").status_code == 404
    assert client.post(f"/tools/new?suggestion={theirs.id}", form(credential_later="on")).status_code == 404
    assert client.get("/tools/new?suggestion=not-a-uuid").status_code == 404

    _, ours = agent_client(org, "Acme-Agent")
    ours.suggest("Notion", "Specs live there.")
    dismissed = ToolSuggestion.objects.get(org=org)
    tool_suggestion_dismiss(suggestion=dismissed, actor=operator)
    assert client.get(f"/tools/new?suggestion={dismissed.id}").status_code == 404
    assert not Tool.objects.exists()
