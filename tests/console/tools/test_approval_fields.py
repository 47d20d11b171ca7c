"""The tool form's approval fields: how many distinct approvers, and separation of duties."""

from __future__ import annotations

import pytest

from audit.models import Action, AuditEvent
from catalog.models import Tool
from tests import factories
from tests.console.tools.support import console_for, page
from tests.console.tools.test_create import form

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "At least 1: access is never open without an approval."), ("6", "At most 5 approvers.")],
)
def test_creating_a_tool_with_0_or_6_approvals_is_a_form_error_not_a_tool(org, admin_member, value, message):
    response = console_for(admin_member).post(
        "/tools/new",
        form(credential=factories.new_credential(), required_approvals=value, approval_fields="1"),
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Tool.objects.filter(org=org).exists()


def test_a_tool_created_with_2_approvals_and_separation_of_duties_keeps_them(org, admin_member):
    client = console_for(admin_member)
    assert 'name="required_approvals"' in page(client, "/tools/new")
    response = client.post(
        "/tools/new",
        form(
            credential=factories.new_credential(),
            required_approvals="2",
            separation_of_duties="on",
            approval_fields="1",
        ),
    )
    assert response.status_code == 302
    tool = Tool.objects.get(org=org)
    assert (tool.required_approvals, tool.separation_of_duties, tool.owner) == (2, True, admin_member.user)


def edit_form(tool: Tool, **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": tool.name,
        "url": tool.url,
        "description": tool.description,
        "auth_type": tool.auth_type,
        "credential_expires_on": "",
        "required_approvals": str(tool.required_approvals),
        "approval_fields": "1",
    }
    data.update(overrides)
    return data


def test_editing_the_approvals_is_audited_and_unticking_turns_separation_off(org, owner):
    tool = factories.make_tool(org, "Prod DB", required_approvals=2, separation_of_duties=True)
    client = console_for(owner)
    edit_page = page(client, f"/tools/{tool.id}/edit")
    assert 'name="required_approvals"' in edit_page
    assert 'value="2"' in edit_page
    response = client.post(f"/tools/{tool.id}/edit", edit_form(tool, required_approvals="3"))
    assert response.status_code == 302
    tool.refresh_from_db()
    assert (tool.required_approvals, tool.separation_of_duties) == (3, False)
    event = AuditEvent.objects.filter(action=Action.TOOL_UPDATED, target_id=str(tool.id)).latest("id")
    assert event.metadata["required_approvals"] == 3
    assert event.metadata["separation_of_duties"] is False

    refused = client.post(f"/tools/{tool.id}/edit", edit_form(tool, required_approvals="0"))
    assert refused.status_code == 200
    assert "At least 1: access is never open without an approval." in refused.content.decode()
    tool.refresh_from_db()
    assert tool.required_approvals == 3


def test_a_form_posted_without_the_approval_fields_keeps_them(org, owner):
    tool = factories.make_tool(org, "Prod DB", required_approvals=2, separation_of_duties=True)
    data = edit_form(tool, description="Changed.")
    del data["required_approvals"], data["approval_fields"]
    assert console_for(owner).post(f"/tools/{tool.id}/edit", data).status_code == 302
    tool.refresh_from_db()
    assert (tool.required_approvals, tool.separation_of_duties, tool.description) == (2, True, "Changed.")
