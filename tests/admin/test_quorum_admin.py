"""The operator console on a tool that needs several approvers: approvals are counted, not decisive."""

from __future__ import annotations

import pytest

from accounts.models import Role
from audit.models import Action, AuditEvent
from catalog.models import CredentialMode
from grants.models import AccessGrant, GrantApproval, GrantStatus
from grants.services import grant_request
from tests import factories
from tests.admin.conftest import GRANTS, TOOLS, action, html, messages_of

pytestmark = pytest.mark.django_db


def test_approving_from_the_admin_records_one_approval_and_shows_the_count(org, agent, staff_member):
    tool = factories.make_tool(org, "Prod DB", mode=CredentialMode.PER_AGENT, required_approvals=2)
    grant = grant_request(agent=agent, tool=tool, reason="I need it to file the bugs I find.")
    first, second = staff_member((org, Role.APPROVER)), staff_member((org, Role.APPROVER))

    page = html(first.get(f"{GRANTS}{grant.pk}/approve/"))
    assert 'name="credential"' not in page, "the credential comes with the approval that completes the quorum"
    response = first.post(f"{GRANTS}{grant.pk}/approve/", {"duration": "none"}, follow=True)
    assert any("Approval recorded" in m and "1 of 2" in m for m in messages_of(response))
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING
    assert "1 of 2 — " in html(first.get(f"{GRANTS}{grant.pk}/change/"))

    assert 'name="credential"' in html(second.get(f"{GRANTS}{grant.pk}/approve/"))
    second.post(
        f"{GRANTS}{grant.pk}/approve/", {"duration": "none", "credential": factories.new_credential()}
    )
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.APPROVED
    assert GrantApproval.objects.filter(grant=grant).count() == 2
    assert (
        AuditEvent.objects.filter(target_id=str(grant.id), action=Action.GRANT_APPROVAL_RECORDED).count() == 2
    )


def test_bulk_approval_in_the_admin_says_which_requests_need_more_approvers(org, agent, console):
    tool = factories.make_tool(org, "Prod DB", required_approvals=3)
    grant = grant_request(agent=agent, tool=tool, reason="I need it to file the bugs I find.")
    response = console.post(
        GRANTS, action("approve_selected", grant.pk, duration="8h", apply="1"), follow=True
    )
    assert any("more approvers are needed" in m and "(1 of 3" in m for m in messages_of(response))
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING


def test_the_tool_page_shows_the_approval_rules_read_only(org, console):
    tool = factories.make_tool(org, "Prod DB", required_approvals=4, separation_of_duties=True)
    page = html(console.get(f"{TOOLS}{tool.pk}/change/"))
    assert "Approvals" in page
    assert 'name="required_approvals"' not in page, "changed through the audited services, not here"
