"""The inbox on a tool that needs several approvers: the count, who approved, and who may not."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import Role
from audit.models import Action, AuditEvent
from grants.models import AccessGrant, GrantApproval, GrantStatus
from grants.services import grant_approve, tool_add
from tests import factories
from tests.console.inbox.conftest import console_for

pytestmark = pytest.mark.django_db
HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


def item_of(html: str, grant: AccessGrant) -> str:
    start = html.index(f'id="grant-{grant.id}"')
    return html[start : html.index("</li>", start)]


def test_approving_a_2_of_2_tool_in_the_inbox_shows_the_count_and_needs_a_second_person(org, make_request):
    first, second = (factories.make_member(org, Role.APPROVER) for _ in range(2))
    tool = factories.make_tool(org, "Prod DB", required_approvals=2)
    grant = make_request(tool)
    first_console, second_console = console_for(first), console_for(second)

    before = item_of(first_console.get("/inbox/").content.decode(), grant)
    assert "0 of 2 approvals" in before
    assert "Approve (1 of 2)" in before

    response = first_console.post(f"/grants/{grant.id}/approve", {"duration": "8h"})
    assert response.status_code == 302
    page = first_console.get("/inbox/").content.decode()
    assert "your approval (for 8 h) is recorded: 1 of 2 approvals" in page
    mine = item_of(page, grant)
    assert f"1 of 2 approvals — approved by {first.user.email}" in mine
    assert "You approved this request; it needs another person&#x27;s approval." in mine
    assert f"/grants/{grant.id}/approve" not in mine, "no Approve button for someone who already approved"
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING

    theirs = item_of(second_console.get("/inbox/").content.decode(), grant)
    assert f"1 of 2 approvals — approved by {first.user.email}" in theirs
    assert f"/grants/{grant.id}/approve" in theirs
    assert "Approve (" not in theirs
    response = second_console.post(f"/grants/{grant.id}/approve", {"duration": "8h"}, **HTMX)
    assert "Approved" in response.content.decode()
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.APPROVED
    actions = list(
        AuditEvent.objects.filter(target_id=str(grant.id)).order_by("id").values_list("action", flat=True)
    )
    assert actions[-3:] == [
        Action.GRANT_APPROVAL_RECORDED,
        Action.GRANT_APPROVAL_RECORDED,
        Action.GRANT_APPROVED,
    ]


def test_a_second_approval_by_the_same_person_is_refused_with_the_reason(org, make_request):
    approver = factories.make_member(org, Role.APPROVER)
    grant = make_request(factories.make_tool(org, "Prod DB", required_approvals=2))
    client = console_for(approver)
    partial = client.post(f"/grants/{grant.id}/approve", {"duration": "8h"}, **HTMX).content.decode()
    assert "Approval recorded" in partial
    assert "1 of 2 approvals" in partial
    again = client.post(f"/grants/{grant.id}/approve", {"duration": "8h"}, **HTMX)
    assert again.status_code == 200
    assert "You already approved this request (1 of 2 approvals)." in again.content.decode()
    assert GrantApproval.objects.filter(grant=grant).count() == 1


def test_separation_of_duties_hides_approve_from_the_tools_owner_and_the_service_refuses_anyway(
    org, make_request
):
    tool_owner = factories.make_member(org, Role.ADMIN)
    tool = tool_add(
        org=org,
        actor=tool_owner,
        name="Payroll",
        credential=factories.new_credential(),
        separation_of_duties=True,
    ).tool
    grant = make_request(tool)
    client = console_for(tool_owner)
    item = item_of(client.get("/inbox/").content.decode(), grant)
    assert "Separation of duties: as the tool&#x27;s owner you may not approve this" in item
    assert f"/grants/{grant.id}/approve" not in item
    response = client.post(f"/grants/{grant.id}/approve", {"duration": "8h"})
    assert response.status_code == 302
    assert "Separation of duties" in client.get("/inbox/").content.decode()
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING
    assert not GrantApproval.objects.filter(grant=grant).exists()


def test_bulk_approval_records_partial_approvals_and_says_so(org, make_request):
    approver = factories.make_member(org, Role.APPROVER)
    quorum = make_request(factories.make_tool(org, "Prod DB", required_approvals=2))
    single = make_request(factories.make_tool(org, "Docs"))
    client = console_for(approver)
    client.post("/grants/approve", {"grant": [str(quorum.id), str(single.id)], "duration": "8h"})
    page = client.get("/inbox/").content.decode()
    assert "Your approval is recorded for 1 request that needs more approvers" in page
    assert AccessGrant.objects.get(pk=quorum.pk).status == GrantStatus.PENDING
    assert AccessGrant.objects.get(pk=single.pk).status == GrantStatus.APPROVED


def test_the_count_costs_one_query_whatever_the_number_of_quorum_requests(org, owner, make_request):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    approver = factories.make_member(org, Role.APPROVER)
    tool = factories.make_tool(org, "Prod DB", required_approvals=3)
    client = console_for(owner)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/inbox/").status_code == 200
        return len(captured.captured_queries)

    for _ in range(2):
        grant_approve(grant=make_request(tool), reviewer=approver)
    few = queries()
    for _ in range(8):
        grant_approve(grant=make_request(tool), reviewer=approver)
    assert queries() == few
    assert client.get("/inbox/").content.decode().count("1 of 3 approvals — approved by") == 10
