"""Who may decide what in the inbox: approvers decide requests, admins also suggestions, auditors read."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import Role
from audit.models import AuditEvent
from catalog.models import GuideSuggestion, SuggestionStatus, ToolSuggestion
from grants.models import AccessGrant, GrantStatus
from tests import factories
from tests.console.inbox.conftest import console_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def waiting(tool, make_request, suggest_tool, suggest_guide) -> dict[str, Any]:
    return {
        "grant": make_request(tool),
        "tool_suggestion": suggest_tool("Notion", "Docs-Agent", "Wiki-Agent"),
        "guide_suggestion": suggest_guide(tool, "Always link the incident.", "Infra-Agent"),
    }


def posts(w: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    grant, tool_s, guide_s = w["grant"], w["tool_suggestion"], w["guide_suggestion"]
    return [
        (f"/grants/{grant.id}/approve", {"duration": "8h"}),
        (f"/grants/{grant.id}/deny", {"reason": "Not for this team."}),
        ("/grants/approve", {"grant": [grant.id], "duration": "8h"}),
        (f"/inbox/tool-suggestions/{tool_s.id}/dismiss", {"reason": "No."}),
        (f"/inbox/guide-suggestions/{guide_s.id}/accept", {}),
        (f"/inbox/guide-suggestions/{guide_s.id}/dismiss", {}),
    ]


def assert_nothing_changed(w: dict[str, Any], events_before: int) -> None:
    assert AccessGrant.objects.get(pk=w["grant"].pk).status == GrantStatus.PENDING
    assert ToolSuggestion.objects.get(pk=w["tool_suggestion"].pk).status == SuggestionStatus.PENDING
    assert GuideSuggestion.objects.get(pk=w["guide_suggestion"].pk).status == SuggestionStatus.PENDING
    assert AuditEvent.objects.count() == events_before


def test_an_owner_sees_every_action(owner, waiting):
    html = console_for(owner).get("/inbox/").content.decode()
    assert "Approve selected" in html
    assert ">Approve</button>" in html
    assert "Deny…" in html
    assert "Add this tool" in html
    assert ">Accept</button>" in html
    assert "Edit before accepting" in html
    assert html.count("Dismiss…") == 2


def test_an_approver_decides_requests_but_sees_no_suggestion_buttons(approver, waiting, audit_log):
    client = console_for(approver)
    html = client.get("/inbox/").content.decode()
    assert ">Approve</button>" in html
    assert "Deny…" in html
    assert "Approve selected" in html
    assert "Notion" in html, "suggestions are still shown"
    assert "Always link the incident." in html
    assert "Add this tool" not in html
    assert "Dismiss…" not in html
    assert ">Accept</button>" not in html
    assert "Edit before accepting" not in html

    events = AuditEvent.objects.count()
    for path, data in posts(waiting)[3:]:
        assert client.post(path, data).status_code == 403, path
    assert_nothing_changed(waiting, events)

    response = client.post(f"/grants/{waiting['grant'].id}/approve", {"duration": "8h"})
    assert response.status_code == 302
    assert AccessGrant.objects.get(pk=waiting["grant"].pk).status == GrantStatus.APPROVED
    assert audit_log.actions()[-1] == "grant.approved"


def test_an_auditor_reads_the_inbox_without_any_action(auditor, waiting):
    client = console_for(auditor)
    response = client.get("/inbox/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Read-only" in html
    assert "Docs-Agent + 1 other want Notion" in html
    for control in (
        '<form method="post" action="/grants',
        "bulk-approve",
        "Add this tool",
        "Dismiss",
        "Deny",
    ):
        assert control not in html, control
    assert 'type="checkbox" name="grant"' not in html


def test_an_auditor_gets_403_on_every_post(auditor, waiting):
    client = console_for(auditor)
    events = AuditEvent.objects.count()
    for path, data in posts(waiting):
        assert client.post(path, data).status_code == 403, path
        assert client.post(path, data, HTTP_HX_REQUEST="true").status_code == 403, path
    assert_nothing_changed(waiting, events)


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.APPROVER])
def test_a_member_of_another_organization_gets_404(other_org, waiting, role):
    stranger = factories.make_member(other_org, role)
    client = console_for(stranger)
    events = AuditEvent.objects.count()
    for path, data in posts(waiting):
        if path == "/grants/approve":
            continue  # bulk ids are looked up in the active organization only
        if role == Role.APPROVER and path.startswith("/inbox/"):
            assert client.post(path, data).status_code == 403, path  # refused before the lookup
            continue
        assert client.post(path, data).status_code == 404, path
    client.post("/grants/approve", {"grant": [waiting["grant"].id], "duration": "8h"})
    assert_nothing_changed(waiting, events)
    html = client.get("/inbox/").content.decode()
    assert "Notion" not in html
    assert "Always link the incident." not in html


def test_anonymous_people_are_sent_to_sign_in(waiting):
    from django.test import Client

    client = Client()
    assert client.get("/inbox/").status_code == 302
    assert client.get("/inbox/count").status_code == 302
    events = AuditEvent.objects.count()
    for path, data in posts(waiting):
        response = client.post(path, data)
        assert response.status_code == 302, path
        assert "/accounts/login" in response["Location"], path
    assert_nothing_changed(waiting, events)


def test_get_on_a_decision_url_is_not_allowed(owner, waiting):
    client = console_for(owner)
    assert client.get(f"/grants/{waiting['grant'].id}/approve").status_code == 405
    assert client.get(f"/inbox/guide-suggestions/{waiting['guide_suggestion'].id}/accept").status_code == 405
