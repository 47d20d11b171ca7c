"""Canary tools: a decoy any request or suggestion for raises a high alert (a sign of prompt
injection). The agent sees an ordinary tool; no interface can ever make one vendable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from accounts.models import AgentStatus
from accounts.services import AGENT_SUSPENDED
from agentkey.core.errors import Conflict, ValidationFailed
from audit.models import Action, AuditEvent
from catalog.models import Tool
from grants.anomalies import CANARY_NOT_APPROVABLE
from grants.models import AccessGrant, AlertRule, AlertSeverity, GrantStatus
from grants.services import (
    CANARY_MARKED,
    NOT_APPROVED,
    NOT_APPROVED_HINTS,
    grant_approve,
    grant_assign,
    grant_deny,
    tool_edit,
)
from notifications.models import Delivery, Event
from tests import factories
from tests.grants.alerting import alert_channel, alert_deliveries, alerts, delivered_text, kill_switch
from tests.notifications.conftest import connect, receiver
from tests.support.http import AgentClient, access_of

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loopback")]

DECOY_WORDS = ("canary", "decoy", "trap", "honeypot", "alert")


@pytest.fixture
def loopback(settings):
    settings.AGENTKEY_ALLOW_LOOPBACK_URLS = True


@pytest.fixture
def canary(org):
    return factories.make_tool(org, "Payroll Admin", url="https://payroll.example.com", is_canary=True)


def without_ids(body):
    return {k: v for k, v in body.items() if k not in ("request_id", "tool_id", "tool_name", "hint")}


def test_requesting_a_canary_raises_a_high_alert_and_notifies_while_the_agent_sees_a_normal_request(
    org, agent, api, tool, canary
):
    with alert_channel(org) as server:
        response = api.request_access(canary.id, "The ticket says I need payroll access.")
        normal = api.request_access(tool.id, "I need it to file bugs for the team.")
        assert response.status_code == normal.status_code == 201
        assert without_ids(response.json()) == without_ids(normal.json())
        assert not any(word in response.content.decode().lower() for word in DECOY_WORDS)
        assert access_of(api.tools(), canary.id) == "pending"
        [alert] = alerts(AlertRule.CANARY)
        assert (alert.severity, alert.agent_id, alert.tool_id) == (AlertSeverity.HIGH, agent.id, canary.id)
        assert alert.details == {"via": "request"}
        event = AuditEvent.objects.get(action=Action.ALERT_RAISED)
        assert event.metadata["severity"] == "high"
        assert event.tool_id == canary.id
        [delivery] = alert_deliveries()
        text = delivered_text(delivery, server)
        assert text.startswith(
            "High alert: Onboarding-Agent requested access to the canary tool Payroll Admin: "
            "a sign of prompt injection"
        )
    agent.refresh_from_db()
    assert agent.status == AgentStatus.ACTIVE


def test_suggesting_a_canary_raises_a_high_alert_and_gets_the_same_answer_as_any_existing_tool(
    org, agent, api, tool, canary
):
    with alert_channel(org) as server:
        decoy = api.suggest("payroll admin", url="https://payroll.example.com")
        real = api.suggest("Linear", url="https://linear.app")
        assert decoy.status_code == real.status_code == 409
        assert without_ids(decoy.json()) == without_ids(real.json())
        assert decoy.json()["tool_id"] == str(canary.id)
        assert not any(word in decoy.content.decode().lower() for word in DECOY_WORDS)
        [alert] = alerts(AlertRule.CANARY)
        assert (alert.severity, alert.details) == (AlertSeverity.HIGH, {"via": "suggestion"})
        [delivery] = alert_deliveries()
        assert "Onboarding-Agent suggested the canary tool Payroll Admin" in delivered_text(delivery, server)
    assert AuditEvent.objects.filter(action=Action.TOOL_SUGGESTION_REDIRECTED).count() == 2


def test_a_canary_can_never_be_approved_or_assigned(org, agent, api, canary, approver, operator):
    api.request_access(canary.id)
    grant = AccessGrant.objects.get(agent=agent, tool=canary)
    with pytest.raises(Conflict) as refused:
        grant_approve(grant=grant, reviewer=approver)
    assert refused.value.message == CANARY_NOT_APPROVABLE.format(tool="Payroll Admin")
    assert "Deny the request" in refused.value.hint
    other = factories.make_agent(org, "Other-Agent").agent
    with pytest.raises(Conflict):
        grant_assign(agent=other, tool=canary, actor=operator)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PENDING
    assert not AccessGrant.objects.filter(agent=other, tool=canary).exists()


def test_an_assignment_holding_a_stale_copy_of_the_tool_is_refused_once_it_is_a_canary(
    org, agent, tool, operator
):
    stale = Tool.objects.get(pk=tool.pk)  # loaded by the assigning form before the mark
    tool_edit(tool=tool, actor=operator, is_canary=True)
    assert stale.is_canary is False
    with pytest.raises(Conflict) as refused:
        grant_assign(agent=agent, tool=stale, actor=operator)
    assert refused.value.message == CANARY_NOT_APPROVABLE.format(tool=tool.name)
    assert not AccessGrant.objects.filter(agent=agent, tool=tool).exists()


def revoked_hint(tool_id):
    return {"error": NOT_APPROVED, "hint": NOT_APPROVED_HINTS[GrantStatus.REVOKED].format(tool_id=tool_id)}


def test_an_approval_that_predates_the_canary_mark_is_never_vended(org, agent, api, tool, operator):
    """A grant approved on a tool that became a decoy without tool_edit (before the upgrade that
    brought it, or a row written around the services) is still refused at the vend."""
    grant_assign(agent=agent, tool=tool, actor=operator)
    Tool.objects.filter(pk=tool.pk).update(is_canary=True)
    assert AccessGrant.objects.get(agent=agent, tool=tool).status == GrantStatus.APPROVED
    refused = api.credentials(tool.id)
    assert (refused.status_code, refused.json()) == (403, revoked_hint(tool.id))
    assert not AuditEvent.objects.filter(action=Action.CREDENTIAL_VENDED).exists()


def test_marking_a_tool_as_a_canary_revokes_its_approved_and_pending_access_like_a_revoke(
    org, agent, api, tool, operator
):
    grant_assign(agent=agent, tool=tool, actor=operator)
    assert api.credentials(tool.id).status_code == 200
    asking = factories.make_agent(org, "Asking-Agent")
    assert AgentClient(asking.key.plaintext).request_access(tool.id).status_code == 201
    refused_before = factories.make_agent(org, "Denied-Agent")
    assert AgentClient(refused_before.key.plaintext).request_access(tool.id).status_code == 201
    grant_deny(
        grant=AccessGrant.objects.get(agent=refused_before.agent, tool=tool),
        reviewer=operator,
        reason="Not for this team.",
    )
    with receiver() as server:
        connect(org, operator, server, "slack", events=["access.revoked"])
        tool_edit(tool=tool, actor=operator, is_canary=True)
    assert AuditEvent.objects.filter(action=Action.TOOL_UPDATED).latest("id").metadata["is_canary"] is True

    refused = api.credentials(tool.id)
    assert (refused.status_code, refused.json()) == (403, revoked_hint(tool.id))
    approved = AccessGrant.objects.get(agent=agent, tool=tool)
    pending = AccessGrant.objects.get(agent=asking.agent, tool=tool)
    for grant in (approved, pending):
        assert (grant.status, grant.decided_by_label) == (GrantStatus.REVOKED, operator.audit_actor().label)
        assert grant.decided_at is not None
    assert AccessGrant.objects.get(agent=refused_before.agent, tool=tool).status == GrantStatus.DENIED
    revoked = AuditEvent.objects.filter(action=Action.GRANT_REVOKED).order_by("id")
    assert {(e.target_id, e.metadata["from"]) for e in revoked} == {
        (str(approved.id), GrantStatus.APPROVED),
        (str(pending.id), GrantStatus.PENDING),
    }
    assert {e.metadata["reason"] for e in revoked} == {CANARY_MARKED}
    assert {e.actor_label for e in revoked} == {operator.audit_actor().label}
    notified = Delivery.objects.filter(event=Event.ACCESS_REVOKED)
    assert sorted(d.payload["subject"]["agent"] for d in notified) == ["Asking-Agent", "Onboarding-Agent"]
    # Asking again is a request for a decoy now: pending, alerted, and never approvable.
    assert api.request_access(tool.id).status_code == 201
    assert len(alerts(AlertRule.CANARY)) == 1
    with pytest.raises(Conflict):
        grant_approve(grant=AccessGrant.objects.get(agent=agent, tool=tool), reviewer=operator)


def test_editing_a_tool_that_already_is_a_canary_leaves_its_pending_requests_alone(
    org, agent, api, canary, operator
):
    assert api.request_access(canary.id).status_code == 201
    tool_edit(tool=canary, actor=operator, is_canary=True, description="Payroll for the whole group.")
    assert AccessGrant.objects.get(agent=agent, tool=canary).status == GrantStatus.PENDING
    assert not AuditEvent.objects.filter(action=Action.GRANT_REVOKED).exists()


def test_a_stale_copy_of_the_tool_still_ends_the_access_when_it_is_marked(org, agent, api, tool, operator):
    grant_assign(agent=agent, tool=tool, actor=operator)
    stale = Tool.objects.get(pk=tool.pk)
    stale.is_canary = True  # what another admin's form would hold after an unmark it did not see
    tool_edit(tool=stale, actor=operator, is_canary=True)
    assert Tool.objects.get(pk=tool.pk).is_canary is True
    assert AccessGrant.objects.get(agent=agent, tool=tool).status == GrantStatus.REVOKED
    assert api.credentials(tool.id).json() == revoked_hint(tool.id)


def test_with_the_kill_switch_on_a_canary_request_suspends_the_agent(org, agent, api, tool, canary, operator):
    grant_assign(agent=agent, tool=tool, actor=operator)
    kill_switch(org, on=True)
    assert api.request_access(canary.id).status_code == 201, "the agent is not tipped off"
    [alert] = alerts(AlertRule.CANARY)
    assert alert.agent_suspended
    agent.refresh_from_db()
    assert agent.status == AgentStatus.SUSPENDED
    refused = api.credentials(tool.id)
    assert (refused.status_code, refused.json()["error"]) == (403, AGENT_SUSPENDED.error)


def test_repeated_canary_requests_within_the_hour_raise_one_alert(org, agent, api, canary, approver):
    api.request_access(canary.id)
    assert api.request_access(canary.id).status_code == 409  # already pending, like any tool
    assert len(alerts(AlertRule.CANARY)) == 1


def test_the_mcp_suggest_tool_shares_the_canary_check(org, agent, canary):
    from grants.api import suggestion_submit

    with pytest.raises(Conflict):
        suggestion_submit(agent=agent, data={"name": "Payroll Admin", "reason": "The prompt said so."})
    assert len(alerts(AlertRule.CANARY)) == 1


def test_catalog_as_code_exports_and_imports_the_canary_flag(org, canary, operator):
    from catalog.ascode import catalog_export, parse_catalog, render
    from grants.catalog_import import catalog_import

    document = catalog_export(org)
    [exported] = [t for t in document["tools"] if t["config_key"] == canary.config_key]
    assert exported["is_canary"] is True
    text = render(
        {"version": 1, "tools": [{"config_key": "hr-portal", "name": "HR Portal", "is_canary": True}]}, "yaml"
    )
    catalog_import(org=org, actor=operator, specs=parse_catalog(text, "yaml"))
    from catalog.models import Tool

    assert Tool.objects.get(org=org, config_key="hr-portal").is_canary is True
    with pytest.raises(ValidationFailed) as invalid:
        parse_catalog('version: 1\ntools:\n  - config_key: x\n    name: X\n    is_canary: "yes"\n', "yaml")
    assert any(d.message == "must be true or false." for d in invalid.value.details)


def test_importing_a_catalog_that_marks_a_tool_as_a_canary_revokes_its_access(
    org, agent, api, tool, operator
):
    from catalog.ascode import catalog_export, parse_catalog, render
    from grants.catalog_import import catalog_import

    grant_assign(agent=agent, tool=tool, actor=operator)
    document = catalog_export(org)
    [entry] = [t for t in document["tools"] if t["config_key"] == tool.config_key]
    entry["is_canary"] = True
    catalog_import(org=org, actor=operator, specs=parse_catalog(render(document, "yaml"), "yaml"))
    assert Tool.objects.get(pk=tool.pk).is_canary is True
    assert AccessGrant.objects.get(agent=agent, tool=tool).status == GrantStatus.REVOKED
    revoked = AuditEvent.objects.get(action=Action.GRANT_REVOKED)
    assert revoked.metadata["reason"] == CANARY_MARKED
    assert api.credentials(tool.id).json() == revoked_hint(tool.id)


def test_every_interface_edits_tools_through_the_service_that_ends_canary_access():
    """catalog.services.tool_update alone would leave the grants of a new canary open."""
    root = Path(__file__).resolve().parents[2]
    callers = {
        str(path.relative_to(root))
        for app in ("accounts", "catalog", "grants", "notifications", "agentkey")
        for path in (root / app).rglob("*.py")
        if re.search(r"(?<!def )\btool_update\(", path.read_text())
    }
    assert callers == {"grants/services/tools.py"}


def test_another_organizations_agent_never_reaches_the_canary(canary, stranger_api):
    assert stranger_api.request_access(canary.id).status_code == 404
    assert stranger_api.suggest("Payroll Admin", url="https://payroll.example.com").status_code == 201
    assert alerts(AlertRule.CANARY) == []
