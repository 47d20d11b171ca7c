"""Canary tools: a decoy any request or suggestion for raises a high alert (a sign of prompt
injection). The agent sees an ordinary tool; no interface can ever make one vendable."""

from __future__ import annotations

import pytest

from accounts.models import AgentStatus
from accounts.services import AGENT_SUSPENDED
from agentkey.core.errors import Conflict, ValidationFailed
from audit.models import Action, AuditEvent
from catalog.services import tool_update
from grants.anomalies import CANARY_NOT_APPROVABLE
from grants.models import AccessGrant, AlertRule, AlertSeverity, GrantStatus
from grants.services import grant_approve, grant_assign
from tests import factories
from tests.grants.alerting import alert_channel, alert_deliveries, alerts, delivered_text, kill_switch
from tests.support.http import access_of

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


def test_a_canary_can_never_be_approved_assigned_or_vended(org, agent, api, canary, approver, operator):
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
    vend = api.credentials(canary.id)
    assert vend.status_code == 403
    assert "credential" not in vend.json()


def test_a_tool_marked_canary_after_approval_is_never_vended_again(org, agent, api, tool, operator):
    grant_assign(agent=agent, tool=tool, actor=operator)
    assert api.credentials(tool.id).status_code == 200
    tool_update(tool=tool, actor=operator, is_canary=True)
    assert AuditEvent.objects.filter(action=Action.TOOL_UPDATED).latest("id").metadata["is_canary"] is True
    refused = api.credentials(tool.id)
    assert refused.status_code == 403
    assert refused.json()["error"] == "This tool has not been approved for the agent."
    assert "credential" not in refused.json()


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


def test_another_organizations_agent_never_reaches_the_canary(canary, stranger_api):
    assert stranger_api.request_access(canary.id).status_code == 404
    assert stranger_api.suggest("Payroll Admin", url="https://payroll.example.com").status_code == 201
    assert alerts(AlertRule.CANARY) == []
