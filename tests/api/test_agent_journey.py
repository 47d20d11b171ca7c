"""The whole agent journey over HTTP (issue #2 acceptance, first bullet)."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from accounts.permissions import Operator
from audit.models import Action
from catalog.models import SuggestionStatus, ToolSuggestion
from grants.models import AccessGrant, GrantStatus
from grants.services import grant_approve, grant_revoke, tool_add
from tests.factories import make_agent, new_credential
from tests.support.http import AgentClient, access_of

pytestmark = pytest.mark.django_db


def test_zero_access_to_vend_to_revoke(api, agent, tool, credential, approver, audit_log):
    assert access_of(api.tools(), tool.id) == "none"
    assert api.credentials(tool.id).status_code == 403

    audit_log.mark()
    created = api.request_access(tool.id, "I need Linear to file the bugs I find.")
    assert created.status_code == 201
    body = created.json()
    assert body["status"] == "pending"
    assert body["message"] == "Your request has been submitted. A human admin will review it."
    assert access_of(api.tools(), tool.id) == "pending"
    assert audit_log.actions() == [Action.GRANT_REQUESTED]

    grant = AccessGrant.objects.get(id=body["request_id"])
    audit_log.mark()
    grant_approve(grant=grant, reviewer=approver)
    assert audit_log.actions() == [Action.GRANT_APPROVED]
    assert access_of(api.tools(), tool.id) == "approved"

    audit_log.mark()
    vend = api.credentials(tool.id)
    assert vend.status_code == 200
    assert vend.json()["credential"] == credential
    assert vend.json()["instructions"] == "Team key: PLATFORM."
    assert vend.json()["suggest_instructions_endpoint"] == f"/api/tools/{tool.id}/instructions/suggest"
    assert vend["Cache-Control"] == "no-store, private"
    [event] = audit_log.new()
    assert (event.action, event.actor_id, event.target_id) == (
        Action.CREDENTIAL_VENDED,
        str(agent.id),
        str(tool.id),
    )
    assert event.request_id == vend["X-Request-ID"]

    audit_log.mark()
    new_value = new_credential("lin_api_rotated")
    call_command("rotatetoolcredential", str(tool.id), stdin=_stdin(new_value), stdout=_sink())
    assert audit_log.actions() == [Action.TOOL_CREDENTIAL_ROTATED]
    assert api.credentials(tool.id).json()["credential"] == new_value

    audit_log.mark()
    grant_revoke(grant=grant, actor=approver)
    assert audit_log.actions() == [Action.GRANT_REVOKED]
    refused = api.credentials(tool.id)
    assert refused.status_code == 403
    assert refused.json()["hint"] == (
        f"Your access was revoked. Submit a new request via POST /api/tools/{tool.id}/request."
    )
    assert access_of(api.tools(), tool.id) == "revoked"


def test_approval_through_the_cli_and_the_admin_action(api, tool, admin_client_for, audit_log):
    grant_id = api.request_access(tool.id).json()["request_id"]
    audit_log.mark()
    call_command("approve", grant_id, stdout=_sink())
    assert audit_log.actions() == [Action.GRANT_APPROVED]
    assert api.credentials(tool.id).status_code == 200

    grant = AccessGrant.objects.get(id=grant_id)
    grant_revoke(grant=grant, actor=Operator(label="tests"))
    assert api.request_access(tool.id, "Need it again for the release.").status_code == 201

    audit_log.mark()
    admin = admin_client_for()
    response = admin.post(
        "/admin/grants/accessgrant/",
        {"action": "approve_selected", "_selected_action": [grant_id], "duration": "none", "apply": "1"},
    )
    assert response.status_code == 302, response.content[:500]
    assert audit_log.actions() == [Action.GRANT_APPROVED]
    assert AccessGrant.objects.get(id=grant_id).status == GrantStatus.APPROVED
    assert api.credentials(tool.id).status_code == 200


def test_two_spellings_become_one_suggestion_and_the_new_tool_opens_both_requests(org, audit_log):
    first = AgentClient(make_agent(org, "Onboarding-Agent").key.plaintext)
    second = AgentClient(make_agent(org, "Billing-Agent").key.plaintext)

    one = first.suggest("Linear", url="https://linear.app/docs")
    two = second.suggest("linear app", url="http://www.linear.app")
    assert (one.status_code, two.status_code) == (201, 201)
    assert one.json()["existing"] is False
    assert two.json()["existing"] is True
    assert two.json()["message"] == "Your support has been added to an existing pending suggestion."
    suggestion = ToolSuggestion.objects.get()
    assert one.json()["suggestion_id"] == two.json()["suggestion_id"] == str(suggestion.id)
    assert suggestion.backers.count() == 2

    audit_log.mark()
    tool = tool_add(
        org=org,
        actor=Operator(label="tests"),
        name="Linear",
        url="https://linear.app",
        credential=new_credential(),
    ).tool
    assert audit_log.actions() == [
        Action.TOOL_CREATED,
        Action.TOOL_SUGGESTION_ACCEPTED,
        Action.GRANT_REQUESTED,
        Action.GRANT_REQUESTED,
    ]
    suggestion.refresh_from_db()
    assert suggestion.status == SuggestionStatus.ACCEPTED
    assert suggestion.converted_tool_id == tool.id
    assert access_of(first.tools(), tool.id) == "pending"
    assert access_of(second.tools(), tool.id) == "pending"


def _stdin(value: str):
    import io

    return io.StringIO(value + "\n")


def _sink():
    import io

    return io.StringIO()
