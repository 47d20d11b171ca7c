"""The alerts page, acknowledging an alert, and the kill switch on the Members page."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organization, Role
from accounts.permissions import Operator
from agentkey.core.errors import Forbidden
from audit.models import Action, AuditEvent
from grants.anomalies import alert_acknowledge, alert_raise, canary_requested
from grants.models import Alert, AlertRule, AlertSeverity, GrantStatus
from grants.services import CANARY_MARKED, grant_assign
from tests import factories

pytestmark = pytest.mark.django_db


def kill_switch_of(org):
    return Organization.objects.values_list("anomaly_auto_suspend", flat=True).get(pk=org.pk)


def signed_in(membership):
    client = Client()
    client.force_login(membership.user)
    return client


@pytest.fixture
def alert(org, agent):
    decoy = factories.make_tool(org, "Payroll Admin", is_canary=True)
    return canary_requested(agent=agent, tool=decoy, via="request")


@pytest.fixture
def foreign_alert(other_org, stranger):
    decoy = factories.make_tool(other_org, "Secret Vault", is_canary=True)
    return canary_requested(agent=stranger.agent, tool=decoy, via="request")


def test_an_auditor_reads_the_alerts_newest_first_but_cannot_acknowledge(auditor, alert, foreign_alert):
    client = signed_in(auditor)
    page = client.get(reverse("console:alerts")).content.decode()
    assert "Onboarding-Agent requested access to the canary tool Payroll Admin" in page
    assert f'id="alert-{alert.id}"' in page
    assert "Secret Vault" not in page, "another organization's alerts are never listed"
    assert "Acknowledge</button>" not in page
    refused = client.post(reverse("console:alert_acknowledge", args=[alert.id]))
    assert refused.status_code == 403
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_an_approver_acknowledges_an_alert_once_and_it_is_audited(approver, alert):
    client = signed_in(approver)
    assert "Acknowledge</button>" in client.get(reverse("console:alerts")).content.decode()
    response = client.post(reverse("console:alert_acknowledge", args=[alert.id]), follow=True)
    assert "Alert acknowledged." in response.content.decode()
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None
    assert alert.acknowledged_by_label == approver.user.email
    event = AuditEvent.objects.get(action=Action.ALERT_ACKNOWLEDGED)
    assert event.target_id == str(alert.id)
    again = client.post(reverse("console:alert_acknowledge", args=[alert.id]), follow=True)
    assert "This alert was already acknowledged." in again.content.decode()
    assert AuditEvent.objects.filter(action=Action.ALERT_ACKNOWLEDGED).count() == 1


def test_another_organizations_alert_is_not_found(approver, foreign_alert):
    response = signed_in(approver).post(reverse("console:alert_acknowledge", args=[foreign_alert.id]))
    assert response.status_code == 404
    assert Alert.objects.get(pk=foreign_alert.pk).acknowledged_at is None


def test_an_owner_turns_the_kill_switch_on_and_off_and_each_change_is_audited(org, owner):
    client = signed_in(owner)
    members = client.get(reverse("console:members")).content.decode()
    assert 'id="anomaly-kill-switch"' in members
    response = client.post(reverse("console:org_kill_switch"), {"anomaly_auto_suspend": "on"}, follow=True)
    assert "Kill switch on" in response.content.decode()
    assert kill_switch_of(org) is True
    client.post(reverse("console:org_kill_switch"), {})
    assert kill_switch_of(org) is False
    changes = AuditEvent.objects.filter(action=Action.ORG_SETTINGS_CHANGED).order_by("id")
    assert [c.metadata for c in changes] == [
        {"setting": "anomaly_auto_suspend", "from": False, "to": True},
        {"setting": "anomaly_auto_suspend", "from": True, "to": False},
    ]


@pytest.mark.parametrize("role", [Role.APPROVER, Role.AUDITOR])
def test_only_owners_and_admins_change_the_kill_switch(org, role):
    client = signed_in(factories.make_member(org, role))
    assert client.post(reverse("console:org_kill_switch"), {"anomaly_auto_suspend": "on"}).status_code == 403
    assert kill_switch_of(org) is False
    assert not AuditEvent.objects.filter(action=Action.ORG_SETTINGS_CHANGED).exists()


def test_an_admin_marks_a_tool_as_a_canary_in_the_tool_form_which_revokes_its_access(
    org, admin_member, agent, tool
):
    grant = grant_assign(agent=agent, tool=tool, actor=admin_member)
    client = signed_in(admin_member)
    edit = reverse("console:tool_edit", args=[tool.id])
    assert 'name="is_canary"' in client.get(edit).content.decode()
    form = {
        "name": tool.name,
        "url": tool.url,
        "description": "",
        "auth_type": tool.auth_type,
        "is_canary": "on",
    }
    assert client.post(edit, form).status_code == 302
    tool.refresh_from_db()
    assert tool.is_canary is True
    updated = AuditEvent.objects.filter(action=Action.TOOL_UPDATED).latest("id")
    assert updated.metadata["is_canary"] is True
    grant.refresh_from_db()
    assert (grant.status, grant.decided_by_id) == (GrantStatus.REVOKED, admin_member.user_id)
    revoked = AuditEvent.objects.get(action=Action.GRANT_REVOKED)
    assert (revoked.target_id, revoked.metadata["reason"]) == (str(grant.id), CANARY_MARKED)
    del form["is_canary"]
    client.post(edit, form)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED, "unmarking gives no access back"
    tool.refresh_from_db()
    assert tool.is_canary is False


def test_an_alert_without_an_organization_is_acknowledged_by_operators_only(owner):
    alert = alert_raise(
        rule=AlertRule.AUTH_FAILURES,
        severity=AlertSeverity.MEDIUM,
        summary="5 refused agent keys from 192.0.2.7 within 5 minutes",
        window_start=timezone.now(),
        source_address="192.0.2.7",
    )
    assert alert is not None
    with pytest.raises(Forbidden):
        alert_acknowledge(alert=alert, actor=owner)
    assert Alert.objects.get(pk=alert.pk).acknowledged_at is None
    alert_acknowledge(alert=alert, actor=Operator(label="ops"))
    assert Alert.objects.get(pk=alert.pk).acknowledged_at is not None
