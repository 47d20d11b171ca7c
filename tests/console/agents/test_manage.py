"""Rotating an agent's key, suspending and reactivating it, and who may do so."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Agent, AgentKey, AgentStatus, Role
from audit.models import Action
from tests import factories
from tests.console.agents.helpers import KEY, console_for, page, take_shown_key
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db


def test_rotating_with_a_grace_period_keeps_the_old_key_until_it_ends(
    owner, agent, api, audit_log, time_machine
):
    client = console_for(owner)
    response = client.post(f"/agents/{agent.id}/rotate-key", {"grace": "1d"})
    new_key = take_shown_key(response)
    assert new_key != api.key
    assert "keeps working until" in page(response)
    assert "AGENTKEY_URL=" in page(response), "the same key page, snippets and env lines"
    assert 'id="snippet-claude-md"' in page(response)
    [event] = audit_log.new()
    assert event.action == Action.AGENT_KEY_ROTATED
    assert event.metadata["grace_seconds"] == 86400
    assert event.actor_id == str(owner.user_id)

    assert api.me().status_code == 200, "the old key works during the grace period"
    assert AgentClient(new_key).me().status_code == 200
    time_machine.move_to(timezone.now() + timedelta(days=1, seconds=1))
    assert api.me().status_code == 401, "and stops at its end"
    assert AgentClient(new_key).me().status_code == 200

    assert new_key not in page(client.get(f"/agents/{agent.id}/"))


def test_rotating_without_grace_refuses_the_old_key_at_once(owner, agent, api, audit_log):
    response = console_for(owner).post(f"/agents/{agent.id}/rotate-key", {"grace": "none"})
    new_key = take_shown_key(response)
    assert "stopped working just now" in page(response)
    assert api.me().status_code == 401
    assert AgentClient(new_key).me().status_code == 200
    assert audit_log.actions() == [Action.AGENT_KEY_ROTATED]
    assert AgentKey.objects.filter(agent=agent, revoked_at__isnull=False).count() == 1


def test_rotation_is_a_post_and_an_unknown_grace_changes_nothing(owner, agent, api, audit_log):
    client = console_for(owner)
    reload = client.get(f"/agents/{agent.id}/rotate-key")
    assert reload.status_code == 405
    assert not KEY.search(page(reload))
    bad = client.post(f"/agents/{agent.id}/rotate-key", {"grace": "forever"}, follow=True)
    assert "Choose how long the old key keeps working." in page(bad)
    assert not KEY.search(page(bad))
    assert AgentKey.objects.filter(agent=agent).count() == 1
    assert api.me().status_code == 200
    assert audit_log.actions() == []


def test_suspending_refuses_the_agent_and_reactivating_lets_it_back(owner, agent, api, audit_log):
    client = console_for(owner)
    response = client.post(f"/agents/{agent.id}/suspend", follow=True)
    assert response.redirect_chain[-1][0] == f"/agents/{agent.id}/"
    assert "is suspended" in page(response)
    assert "Reactivate" in page(response)
    assert audit_log.actions() == [Action.AGENT_SUSPENDED]
    assert api.me().status_code == 403
    assert api.tools().status_code == 403

    audit_log.mark()
    again = client.post(f"/agents/{agent.id}/suspend", follow=True)
    assert "already suspended" in page(again)
    assert audit_log.actions() == []

    response = client.post(f"/agents/{agent.id}/reactivate", follow=True)
    assert "is active again" in page(response)
    assert audit_log.actions() == [Action.AGENT_REACTIVATED]
    assert Agent.objects.get(pk=agent.pk).status == AgentStatus.ACTIVE
    assert api.me().status_code == 200


def test_the_agent_page_offers_the_forms_with_a_confirmation(owner, agent):
    text = page(console_for(owner).get(f"/agents/{agent.id}/"))
    assert f'action="/agents/{agent.id}/rotate-key"' in text
    assert f'action="/agents/{agent.id}/suspend"' in text
    assert text.count("data-confirm=") >= 2
    for value in ("none", "1h", "1d", "7d"):
        assert f'value="{value}"' in text
    assert '<label for="rotate-grace">' in text


@pytest.mark.parametrize("role", [Role.APPROVER, Role.AUDITOR])
def test_approvers_and_auditors_may_not_rotate_suspend_or_reactivate(role, org, agent, api, audit_log):
    member = factories.make_member(org, role)
    client = console_for(member)
    assert client.post(f"/agents/{agent.id}/rotate-key", {"grace": "none"}).status_code == 403
    assert client.post(f"/agents/{agent.id}/suspend").status_code == 403
    Agent.objects.filter(pk=agent.pk).update(status=AgentStatus.SUSPENDED)
    assert client.post(f"/agents/{agent.id}/reactivate").status_code == 403
    assert Agent.objects.get(pk=agent.pk).status == AgentStatus.SUSPENDED
    Agent.objects.filter(pk=agent.pk).update(status=AgentStatus.ACTIVE)
    assert AgentKey.objects.filter(agent=agent).count() == 1
    assert api.me().status_code == 200
    assert audit_log.actions() == []
    text = page(client.get(f"/agents/{agent.id}/"))
    assert "rotate-key" not in text
    assert "/suspend" not in text


def test_another_organizations_member_gets_404_for_this_organizations_agents(
    agent, api, other_org, audit_log
):
    for role in (Role.OWNER, Role.APPROVER):
        client = console_for(factories.make_member(other_org, role))
        assert client.get(f"/agents/{agent.id}/").status_code == 404
        assert agent.name not in page(client.get("/agents/"))
        if role == Role.OWNER:
            assert client.post(f"/agents/{agent.id}/rotate-key", {"grace": "none"}).status_code == 404
            assert client.post(f"/agents/{agent.id}/suspend").status_code == 404
            assert client.post(f"/agents/{agent.id}/reactivate").status_code == 404
    assert Agent.objects.get(pk=agent.pk).status == AgentStatus.ACTIVE
    assert api.me().status_code == 200
    assert audit_log.actions() == []
