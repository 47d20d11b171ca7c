"""Access requests decided in the operator console go through the grant services."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Role
from audit.models import Action
from catalog.models import CredentialMode
from grants.models import AccessGrant, GrantStatus
from grants.services import grant_approve, grant_request
from tests import factories
from tests.admin.conftest import GRANTS, action, form_data, html, messages_of
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db


def _pending(agent, tool, **kwargs) -> AccessGrant:
    return grant_request(agent=agent, tool=tool, reason="I need it to file the bugs I find.", **kwargs)


def _approve_url(grant: AccessGrant) -> str:
    return f"{GRANTS}{grant.pk}/approve/"


def _close_to(value, expected, slack=timedelta(minutes=1)) -> bool:
    return value is not None and abs(value - expected) < slack


# --- approve_selected ----------------------------------------------------------------------------


def test_approving_first_shows_a_confirmation_page_with_the_duration_choices(agent, tool, console, audit_log):
    grant = _pending(agent, tool)
    audit_log.mark()

    page = console.post(GRANTS, action("approve_selected", grant.pk))

    assert page.status_code == 200
    body = html(page)
    assert "Approve access requests" in body
    assert f"{agent.name} → {tool.name}" in body
    for choice in ("none", "1h", "8h", "1d", "7d", "30d"):
        assert f'value="{choice}"' in body
    assert 'name="apply" value="1"' in body
    assert form_data(page)["_selected_action"] == str(grant.pk)
    assert audit_log.actions() == []
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING


def test_approving_with_a_duration_sets_the_expiry(agent, tool, console, audit_log):
    grant = _pending(agent, tool)
    audit_log.mark()

    response = console.post(GRANTS, action("approve_selected", grant.pk, duration="8h", apply="1"))

    assert response.status_code == 302
    assert audit_log.actions() == [Action.GRANT_APPROVED]
    grant.refresh_from_db()
    assert grant.status == GrantStatus.APPROVED
    assert _close_to(grant.expires_at, timezone.now() + timedelta(hours=8))
    assert grant.decided_by_label.startswith("superuser ")
    assert "Approved 1 access request(s)." in messages_of(response)


def test_approving_without_a_duration_grants_what_the_agent_asked_for(agent, tool, console, audit_log):
    grant = _pending(agent, tool, duration=timedelta(days=1))
    audit_log.mark()

    console.post(GRANTS, action("approve_selected", grant.pk, duration="requested", apply="1"))

    assert audit_log.actions() == [Action.GRANT_APPROVED]
    grant.refresh_from_db()
    assert _close_to(grant.expires_at, timezone.now() + timedelta(days=1))


def test_the_admin_cannot_approve_longer_than_the_agent_asked_for(agent, tool, console):
    grant = _pending(agent, tool, duration=timedelta(days=1))
    response = console.post(GRANTS, action("approve_selected", grant.pk, duration="none", apply="1"))
    grant.refresh_from_db()
    assert (grant.status, grant.expires_at) == (GrantStatus.PENDING, None)
    assert any("an approval cannot give more than it asked for" in m for m in messages_of(response))


def test_bulk_approval_skips_per_agent_tools_and_points_to_their_own_page(
    agent, tool, per_agent_tool, console, audit_log
):
    shared = _pending(agent, tool)
    per_agent = _pending(agent, per_agent_tool)
    audit_log.mark()

    response = console.post(
        GRANTS, action("approve_selected", shared.pk, per_agent.pk, duration="none", apply="1")
    )

    assert response.status_code == 302
    assert audit_log.actions() == [Action.GRANT_APPROVED]
    assert AccessGrant.objects.get(pk=shared.pk).status == GrantStatus.APPROVED
    assert AccessGrant.objects.get(pk=per_agent.pk).status == GrantStatus.PENDING
    [error] = [m for m in messages_of(response) if "credential per agent" in m]
    assert _approve_url(per_agent) in error


def test_a_refused_approval_is_an_error_message(agent, tool, console, audit_log):
    grant = _pending(agent, tool)
    grant_approve(grant=grant, reviewer=factories.OPERATOR)
    audit_log.mark()

    response = console.post(GRANTS, action("approve_selected", grant.pk, duration="none", apply="1"))

    assert response.status_code == 302
    assert audit_log.actions() == []
    assert any("This request is approved, not pending." in m for m in messages_of(response))


# --- the per-grant approve page (per-agent credentials) ------------------------------------------


def test_a_per_agent_request_is_approved_on_its_page_with_the_agents_credential(
    issued, per_agent_tool, console, audit_log
):
    api = AgentClient(issued.key.plaintext)
    grant = AccessGrant.objects.get(id=api.request_access(per_agent_tool.id).json()["request_id"])
    change_page = console.get(f"{GRANTS}{grant.pk}/change/")
    assert _approve_url(grant) in html(change_page)

    page = console.get(_approve_url(grant))
    assert page.status_code == 200
    assert 'type="password" name="credential"' in html(page)

    audit_log.mark()
    missing = console.post(_approve_url(grant), {"duration": "1d"})
    assert missing.status_code == 200
    assert "This field is required." in html(missing)
    assert audit_log.actions() == []

    credential = factories.new_credential("ghp")
    approved = console.post(_approve_url(grant), {"duration": "1d", "credential": credential})

    assert approved.status_code == 302
    assert approved["Location"] == f"{GRANTS}{grant.pk}/change/"
    assert audit_log.actions() == [Action.GRANT_APPROVED]
    grant.refresh_from_db()
    assert grant.secret_id is not None
    assert _close_to(grant.expires_at, timezone.now() + timedelta(days=1))
    assert api.credentials(per_agent_tool.id).json()["credential"] == credential
    after = html(console.get(f"{GRANTS}{grant.pk}/change/"))
    assert credential not in after
    assert "set" in after
    assert _approve_url(grant) not in after


def test_the_approve_page_refuses_what_the_service_refuses(agent, tool, console, audit_log):
    grant = _pending(agent, tool)
    grant_approve(grant=grant, reviewer=factories.OPERATOR)
    audit_log.mark()

    response = console.post(_approve_url(grant), {"duration": "none"})

    assert response.status_code == 200
    assert "This request is approved, not pending." in html(response)
    assert audit_log.actions() == []


# --- deny and revoke -----------------------------------------------------------------------------


def test_denying_needs_a_reason_the_agent_then_sees(issued, tool, console, audit_log):
    api = AgentClient(issued.key.plaintext)
    grant_id = api.request_access(tool.id).json()["request_id"]
    audit_log.mark()

    too_short = console.post(GRANTS, action("deny_selected", grant_id, reason="no", apply="1"))
    assert too_short.status_code == 200
    assert "Ensure this value has at least 5 characters" in html(too_short)
    assert audit_log.actions() == []

    denied = console.post(
        GRANTS, action("deny_selected", grant_id, reason="Use the read-only key instead.", apply="1")
    )

    assert denied.status_code == 302
    assert audit_log.actions() == [Action.GRANT_DENIED]
    assert AccessGrant.objects.get(pk=grant_id).status == GrantStatus.DENIED
    [listed] = [t for t in api.tools().json()["tools"] if t["id"] == str(tool.id)]
    assert listed["denial_reason"] == "Use the read-only key instead."


def test_revoking_stops_the_very_next_fetch(issued, tool, console, audit_log):
    api = AgentClient(issued.key.plaintext)
    grant = _pending(issued.agent, tool)
    grant_approve(grant=grant, reviewer=factories.OPERATOR)
    assert api.credentials(tool.id).status_code == 200

    confirm = console.post(GRANTS, action("revoke_selected", grant.pk))
    assert confirm.status_code == 200
    assert "Revoke access" in html(confirm)

    audit_log.mark()
    revoked = console.post(GRANTS, action("revoke_selected", grant.pk, reason="Project finished.", apply="1"))

    assert revoked.status_code == 302
    assert audit_log.actions() == [Action.GRANT_REVOKED]
    assert audit_log.new()[0].metadata["reason"] == "Project finished."
    assert api.credentials(tool.id).status_code == 403


# --- direct assignment (the add page) ------------------------------------------------------------


def test_direct_assignment_gives_access_without_a_request(issued, tool, console, audit_log):
    page = console.get(f"{GRANTS}add/")
    assert page.status_code == 200
    assert "Assign access directly" in html(page)
    audit_log.mark()

    response = console.post(
        f"{GRANTS}add/", {"agent": issued.agent.pk, "tool": tool.pk, "duration": "7d", "credential": ""}
    )

    assert response.status_code == 302, messages_of(response)
    assert audit_log.actions() == [Action.GRANT_ASSIGNED]
    grant = AccessGrant.objects.get(agent=issued.agent, tool=tool)
    assert grant.status == GrantStatus.APPROVED
    assert _close_to(grant.expires_at, timezone.now() + timedelta(days=7))
    assert AgentClient(issued.key.plaintext).credentials(tool.id).status_code == 200


def test_direct_assignment_of_a_per_agent_tool_needs_the_credential(
    issued, per_agent_tool, console, audit_log
):
    assert per_agent_tool.credential_mode == CredentialMode.PER_AGENT
    audit_log.mark()
    fields = {"agent": issued.agent.pk, "tool": per_agent_tool.pk, "duration": "none"}

    refused = console.post(f"{GRANTS}add/", {**fields, "credential": ""})

    assert refused.status_code == 200
    assert "This tool uses a credential per agent." in html(refused)
    assert audit_log.actions() == []
    assert not AccessGrant.objects.filter(agent=issued.agent).exists()

    credential = factories.new_credential("ghp")
    assigned = console.post(f"{GRANTS}add/", {**fields, "credential": credential})

    assert assigned.status_code == 302
    assert audit_log.actions() == [Action.GRANT_ASSIGNED]
    assert AgentClient(issued.key.plaintext).credentials(per_agent_tool.id).json()["credential"] == credential


def test_direct_assignment_reopens_a_denied_grant(agent, tool, console, audit_log):
    grant = _pending(agent, tool)
    console.post(GRANTS, action("deny_selected", grant.pk, reason="Not this quarter.", apply="1"))
    audit_log.mark()

    response = console.post(f"{GRANTS}add/", {"agent": agent.pk, "tool": tool.pk, "duration": "none"})

    assert response.status_code == 302
    assert audit_log.actions() == [Action.GRANT_ASSIGNED]
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.APPROVED


# --- who may decide ------------------------------------------------------------------------------


def test_an_approver_of_the_organization_approves_in_their_own_name(
    agent, tool, org, staff_member, audit_log
):
    grant = _pending(agent, tool)
    approver = staff_member((org, Role.APPROVER))
    audit_log.mark()

    response = approver.post(GRANTS, action("approve_selected", grant.pk, duration="none", apply="1"))

    assert response.status_code == 302
    [event] = audit_log.new()
    assert event.action == Action.GRANT_APPROVED
    assert event.actor_label == response.wsgi_request.user.email


def test_an_approver_of_another_organization_cannot_approve_this_ones_request(
    agent, tool, other_org, staff_member, audit_log
):
    grant = _pending(agent, tool)
    stranger = staff_member((other_org, Role.APPROVER))
    listing = stranger.get(GRANTS)
    assert listing.status_code == 200
    assert agent.name not in html(listing)
    audit_log.mark()

    response = stranger.post(GRANTS, action("approve_selected", grant.pk, duration="none", apply="1"))

    assert response.status_code == 302
    assert any("not in an organization you are a member of" in m for m in messages_of(response))
    assert audit_log.actions() == []
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING

    direct = stranger.post(_approve_url(grant), {"duration": "none"})
    assert direct.status_code == 302
    assert any("that you can see" in m for m in messages_of(direct))
    assert audit_log.actions() == []


def test_a_role_without_decisions_gets_the_services_refusal(
    agent, tool, org, other_org, staff_member, audit_log
):
    grant = _pending(agent, tool)
    # An approver elsewhere is offered the action, but is only an auditor here.
    auditor = staff_member((org, Role.AUDITOR), (other_org, Role.APPROVER))
    audit_log.mark()

    response = auditor.post(GRANTS, action("approve_selected", grant.pk, duration="none", apply="1"))

    assert response.status_code == 302
    assert any("Your role does not allow this (decide_grants)." in m for m in messages_of(response))
    assert audit_log.actions() == []
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING


def test_the_change_page_is_read_only(agent, tool, console, audit_log):
    grant = _pending(agent, tool)
    page = console.get(f"{GRANTS}{grant.pk}/change/")
    assert page.status_code == 200
    assert 'name="status"' not in html(page)
    audit_log.mark()

    assert console.post(f"{GRANTS}{grant.pk}/change/", {"status": "approved"}).status_code == 403
    assert console.post(f"{GRANTS}{grant.pk}/delete/", {"post": "yes"}).status_code == 403
    assert audit_log.actions() == []


def test_the_changelist_has_no_n_plus_1(org, tool, console, django_assert_max_num_queries):
    for n in range(15):
        _pending(factories.make_agent(org, f"agent-{n}").agent, tool)
    with django_assert_max_num_queries(12):
        response = console.get(GRANTS)
    assert response.status_code == 200
    assert html(response).count("agent-") >= 15
