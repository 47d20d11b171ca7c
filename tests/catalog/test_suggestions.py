"""Tool suggestions: merging, redirects, cooldown; guide suggestions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from audit.models import Action
from catalog.models import GuideSuggestion, SuggestionStatus, ToolSuggestion
from catalog.normalize import normalize_name, normalize_url
from catalog.services import guide_suggestion_dismiss, tool_guide_update, tool_suggestion_dismiss
from grants.models import AccessGrant, GrantStatus
from grants.services import grant_assign, grant_deny, tool_add, tool_suggestion_accept_into
from tests.factories import make_agent, new_credential
from tests.support.http import AgentClient, access_of

pytestmark = pytest.mark.django_db


def test_suggesting_an_existing_tool_redirects_to_it_and_is_audited(api, tool, audit_log):
    response = api.suggest("LINEAR", url="https://www.linear.app/pricing")
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "This tool already exists in the catalog."
    assert body["tool_id"] == str(tool.id)
    assert body["tool_name"] == "Linear"
    assert str(tool.id) in body["hint"]
    assert audit_log.actions() == [Action.TOOL_SUGGESTION_REDIRECTED]
    assert not ToolSuggestion.objects.exists()


def test_a_same_named_suggestion_without_url_also_redirects(api, tool):
    assert api.suggest("linear").status_code == 409


def test_merge_by_domain_keeps_the_first_name_and_fills_a_missing_url(org):
    a = AgentClient(make_agent(org).key.plaintext)
    b = AgentClient(make_agent(org).key.plaintext)
    c = AgentClient(make_agent(org).key.plaintext)
    a.suggest("Linear")
    b.suggest("Linear", url="linear.app")
    c.suggest("Linear Issue Tracker", url="https://LINEAR.app/x")
    suggestion = ToolSuggestion.objects.get()
    assert suggestion.name == "Linear"
    assert (suggestion.url, suggestion.normalized_domain) == ("https://linear.app/", "linear.app")
    assert suggestion.backers.count() == 3


def test_the_same_agent_suggesting_twice_updates_its_reason(api, agent):
    api.suggest("Notion", "We keep specs in Notion.")
    again = api.suggest("notion", "We keep specs and runbooks in Notion.")
    assert again.json()["existing"] is True
    [backer] = ToolSuggestion.objects.get().backers.all()
    assert backer.latest_reason == "We keep specs and runbooks in Notion."


def test_dismissal_starts_a_24_hour_cooldown(api, agent, approver, admin_member, time_machine, audit_log):
    suggestion_id = api.suggest("Jira", url="https://jira.example").json()["suggestion_id"]
    tool_suggestion_dismiss(
        suggestion=ToolSuggestion.objects.get(id=suggestion_id), actor=admin_member, reason="We use Linear."
    )
    audit_log.mark()
    refused = api.suggest("JIRA", url="jira.example")
    assert refused.status_code == 409
    body = refused.json()
    assert body["error"] == "This tool suggestion was recently dismissed."
    assert body["suggestion_id"] == suggestion_id
    assert body["retry_after"].endswith("Z")
    assert audit_log.actions() == [Action.TOOL_SUGGESTION_COOLDOWN]

    time_machine.move_to(timezone.now() + timedelta(hours=24, seconds=1))
    revived = api.suggest("Jira", url="https://jira.example")
    assert revived.status_code == 201
    assert revived.json() | {"suggestion_id": "x"} == {
        "suggestion_id": "x",
        "status": "pending",
        "existing": False,
        "message": "Your tool suggestion has been submitted. A human admin will review it.",
    }
    assert revived.json()["suggestion_id"] == suggestion_id
    assert ToolSuggestion.objects.get().status == SuggestionStatus.PENDING


def test_an_approver_cannot_dismiss_suggestions(api, approver):
    from agentkey.core.errors import Forbidden

    api.suggest("Figma")
    with pytest.raises(Forbidden):
        tool_suggestion_dismiss(suggestion=ToolSuggestion.objects.get(), actor=approver)


def test_invalid_url_is_400(api):
    response = api.suggest("Thing", url="ht!tp://::nope")
    assert response.status_code == 400
    assert response.json()["details"][0] == {"field": "url", "message": "Enter a valid HTTP or HTTPS URL."}


def test_adding_the_tool_never_reopens_a_denied_grant(org, approver, operator):
    backer = make_agent(org, "Backer")
    client = AgentClient(backer.key.plaintext)
    tool = tool_add(org=org, actor=operator, name="Sentry", credential=new_credential()).tool
    client.request_access(tool.id)
    grant_deny(
        grant=AccessGrant.objects.get(agent=backer.agent), reviewer=approver, reason="Ask the on-call lead."
    )
    # The agent suggests it under another name; the admin links the suggestion to the existing tool.
    client.suggest("Sentry.io error tracking", url="https://sentry.io")
    suggestion = ToolSuggestion.objects.get()
    opened = tool_suggestion_accept_into(suggestion=suggestion, tool=tool, actor=operator)
    assert opened == []
    assert AccessGrant.objects.get(agent=backer.agent).status == GrantStatus.DENIED
    assert access_of(client.tools(), tool.id) == "denied"


# --- guide suggestions ---------------------------------------------------------------------------


def test_guide_suggestions_need_an_approved_grant(api, tool):
    response = api.suggest_instructions(tool.id, "Project key is PLATFORM.")
    assert response.status_code == 403
    assert response.json()["hint"] == "Use this endpoint only after the tool has been approved and used."


def test_guide_suggestions_merge_per_guide_version_and_dismissal_is_final_for_it(
    org, api, agent, tool, operator, admin_member
):
    other = make_agent(org)
    for a in (agent, other.agent):
        grant_assign(agent=a, tool=tool, actor=operator)
    first = api.suggest_instructions(tool.id, "Project key is PLATFORM.")
    assert first.status_code == 201
    assert first.json()["existing"] is False
    second = AgentClient(other.key.plaintext).suggest_instructions(tool.id, "project key is platform")
    assert second.json()["existing"] is True
    assert second.json()["suggestion_id"] == first.json()["suggestion_id"]
    suggestion = GuideSuggestion.objects.get()
    assert suggestion.backers.count() == 2

    guide_suggestion_dismiss(
        suggestion=suggestion, actor=admin_member, reason="Already in the onboarding notes."
    )
    refused = api.suggest_instructions(tool.id, "Project key is PLATFORM!")
    assert refused.status_code == 409
    assert refused.json()["dismissal_reason"] == "Already in the onboarding notes."
    assert refused.json()["hint"]

    tool_guide_update(tool=tool, actor=admin_member, content="Team key: PLATFORM. Triage in #incidents.")
    fresh = api.suggest_instructions(tool.id, "Project key is PLATFORM.")
    assert fresh.status_code == 201, "a new guide version makes the same text a fresh suggestion"
    assert fresh.json()["existing"] is False


# --- normalization -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("  Linear, Inc.  ", "linear inc"), ("GitHub", "github"), ("Café", "caf"), ("--", ""), ("A  B", "a b")],
)
def test_normalize_name(raw, expected):
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "url", "domain"),
    [
        ("linear.app", "https://linear.app/", "linear.app"),
        (" https://www.Linear.app/docs ", "https://www.linear.app/docs", "linear.app"),
        ("http://linear.app:80/", "http://linear.app/", "linear.app"),
        ("https://app.linear.app", "https://app.linear.app/", "app.linear.app"),
        ("https://bücher.example/", "https://xn--bcher-kva.example/", "xn--bcher-kva.example"),
        ("https://example.com:8443/x?y=1", "https://example.com:8443/x?y=1", "example.com"),
    ],
)
def test_normalize_url(raw, url, domain):
    parsed = normalize_url(raw)
    assert parsed is not None
    assert (parsed.url, parsed.domain) == (url, domain)


@pytest.mark.parametrize(
    "raw", ["", "   ", "not a url", "ftp://x.example", "https://", "https://user:pw@x.example", "http://[::1"]
)
def test_normalize_url_rejects(raw):
    assert normalize_url(raw) is None


@given(st.text(max_size=200))
def test_normalize_name_is_idempotent_and_ascii(text):
    once = normalize_name(text)
    assert normalize_name(once) == once
    assert all(c.isascii() for c in once)


@given(st.text(max_size=300))
def test_normalize_url_never_raises(text):
    result = normalize_url(text)
    if result is not None:
        assert result.url.startswith(("http://", "https://"))
        assert normalize_url(result.url) == result


def test_a_guide_edit_based_on_an_old_version_is_refused_not_lost(tool, admin_member):
    from agentkey.core.errors import Conflict

    tool_guide_update(tool=tool, actor=admin_member, content="v2: project key PLATFORM.", expected_version=1)
    with pytest.raises(Conflict, match="changed since you opened it"):
        tool_guide_update(tool=tool, actor=admin_member, content="stale edit from v1", expected_version=1)
    tool.refresh_from_db()
    assert tool.usage_guide == "v2: project key PLATFORM."
