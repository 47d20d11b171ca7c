"""Agent lifecycle (docs/governance.md): a human owner for every agent, an optional end of
validity, and what happens to an agent when its owner leaves the organization — end to end,
through the console, the agent API and the notification pipeline to a real HTTP receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.lifecycle import (
    OWNER_NOT_MEMBER,
    OWNER_REQUIRED,
    VALID_UNTIL_PAST,
    agent_set_owner,
    agent_set_valid_until,
    org_set_lifecycle_policy,
)
from accounts.models import Agent, AgentStatus, OwnerDeparture, Role
from accounts.services import AGENT_SUSPENDED, agent_create, user_save
from agentkey.core.errors import Forbidden, ValidationFailed
from audit.models import Action, AuditEvent
from grants.lifecycle import agents_suspend_past_validity
from grants.services import grant_assign
from notifications.models import Delivery, DeliveryStatus, Event
from tests import factories
from tests.cli.conftest import cli_error, cli_json
from tests.console.agents.helpers import take_shown_key
from tests.notifications.conftest import connect, receiver, run
from tests.support.http import AgentClient
from tests.support.servers import Server

pytestmark = pytest.mark.django_db

LIFECYCLE_EVENTS = [str(Event.AGENT_OWNER_DEPARTED), str(Event.AGENT_VALIDITY_ENDED)]


@pytest.fixture
def hook(org: Any, owner: Any, settings: Any) -> Iterator[Server]:
    """A generic webhook channel on a real HTTP server on 127.0.0.1, subscribed to the lifecycle events."""
    settings.AGENTKEY_ALLOW_LOOPBACK_URLS = True
    with receiver() as server:
        connect(org, owner, server, "generic", events=LIFECYCLE_EVENTS)
        yield server


def console(member: Any) -> Client:
    client = Client()
    client.force_login(member.user)
    return client


def owned_agent(org: Any, by: Any, owner_user: Any, tool: Any, name: str = "Billing-Agent") -> Any:
    """An agent owned by ``owner_user`` with approved access to ``tool``, and its API client."""
    issued = agent_create(org=org, name=name, actor=by, owner=owner_user)
    grant_assign(agent=issued.agent, tool=tool, actor=by)
    return issued.agent, AgentClient(issued.key.plaintext)


def sent(server: Server, event: str) -> list[dict[str, Any]]:
    """Send every pending delivery of ``event`` as a worker would; the bodies the receiver got."""
    for delivery in Delivery.objects.filter(event=event, status=DeliveryStatus.PENDING):
        assert run(delivery).status == DeliveryStatus.SENT
    bodies = [json.loads(r.body) for r in server.requests]
    return [b for b in bodies if b["type"] == event]


# --- owners ---------------------------------------------------------------------------------------


def test_a_new_agent_is_owned_by_the_person_creating_it_in_the_console(org, admin_member):
    response = console(admin_member).post(reverse("console:agent_create"), {"name": "Release-Agent"})
    take_shown_key(response)
    agent = Agent.objects.get(name="Release-Agent")
    assert agent.owner_id == agent.created_by_id == admin_member.user_id


def test_the_console_can_give_a_new_agent_another_member_as_owner(org, admin_member, approver):
    page = console(admin_member).get(reverse("console:agent_create"))
    assert approver.user.email in page.content.decode()
    response = console(admin_member).post(
        reverse("console:agent_create"),
        {"name": "Release-Agent", "owner": approver.user_id, "valid_until": "2099-01-31T18:00"},
    )
    take_shown_key(response)
    agent = Agent.objects.get(name="Release-Agent")
    assert agent.owner_id == approver.user_id
    assert agent.valid_until is not None
    assert agent.valid_until.isoformat() == "2099-01-31T18:00:00+00:00"
    created = AuditEvent.objects.get(action=Action.AGENT_CREATED, target_id=str(agent.id))
    assert created.metadata["owner"] == approver.user.email


def test_an_outsider_cannot_be_chosen_as_owner_in_the_console(org, admin_member, stranger_approver):
    console(admin_member).post(
        reverse("console:agent_create"), {"name": "Release-Agent", "owner": stranger_approver.user_id}
    )
    assert not Agent.objects.filter(name="Release-Agent").exists()


def test_an_agent_made_without_a_person_needs_an_owner_once_the_org_has_members(org, operator, owner):
    with pytest.raises(ValidationFailed) as refused:
        agent_create(org=org, name="Nobody's", actor=operator, owner=None)
    assert refused.value.message == OWNER_REQUIRED
    issued = agent_create(org=org, name="Somebody's", actor=operator, owner=owner.user)
    assert issued.agent.owner_id == owner.user_id


def test_an_owner_must_be_a_member_of_the_agents_organization(org, owner, stranger_approver, agent):
    with pytest.raises(ValidationFailed) as refused:
        agent_set_owner(agent=agent, owner=stranger_approver.user, actor=owner)
    assert refused.value.message == OWNER_NOT_MEMBER.format(email=stranger_approver.user.email)
    assert not AuditEvent.objects.filter(action=Action.AGENT_OWNER_CHANGED).exists()


def test_createagent_takes_the_owner_by_email_and_requires_one_once_there_are_members(org, owner):
    assert cli_error("createagent", "--org", org.slug, "--name", "Cli-Agent").startswith(OWNER_REQUIRED.error)
    out = cli_json(
        "createagent", "--org", org.slug, "--name", "Cli-Agent", "--owner", owner.user.email.upper()
    )
    assert out["owner"] == owner.user.email
    assert Agent.objects.get(id=out["agent_id"]).owner_id == owner.user_id
    assert cli_error(
        "createagent", "--org", org.slug, "--name", "X", "--owner", "nobody@example.com"
    ).startswith("'nobody@example.com' is not a member of Acme.")


def test_changing_the_owner_on_the_agent_page_is_audited(org, owner, approver, agent, audit_log):
    page = console(owner).get(reverse("console:agent", kwargs={"agent_id": agent.id}))
    assert "Owner:" in page.content.decode()
    response = console(owner).post(
        reverse("console:agent_owner", kwargs={"agent_id": agent.id}), {"owner": approver.user_id}
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.owner_id == approver.user_id
    [event] = [e for e in audit_log.new() if e.action == Action.AGENT_OWNER_CHANGED]
    assert event.metadata == {"from": owner.user.email, "to": approver.user.email}
    assert event.actor_label == owner.user.email


def test_an_approver_cannot_change_an_agents_owner_or_validity(org, owner, approver, agent):
    assert (
        console(approver)
        .post(reverse("console:agent_owner", kwargs={"agent_id": agent.id}), {"owner": approver.user_id})
        .status_code
        == 403
    )
    with pytest.raises(Forbidden):
        agent_set_valid_until(agent=agent, valid_until=timezone.now() + timedelta(days=1), actor=approver)


# --- valid_until ----------------------------------------------------------------------------------


def test_an_agent_past_its_validity_is_refused_then_suspended_by_the_job(
    org, owner, tool, hook, time_machine, audit_log
):
    agent, api = owned_agent(org, owner, owner.user, tool)
    ends = timezone.now() + timedelta(days=2)
    response = console(owner).post(
        reverse("console:agent_valid_until", kwargs={"agent_id": agent.id}),
        {"valid_until": ends.strftime("%Y-%m-%dT%H:%M")},
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.valid_until == ends.replace(second=0, microsecond=0)
    assert api.credentials(tool.id).status_code == 200

    time_machine.move_to(agent.valid_until + timedelta(seconds=1))
    refused = api.credentials(tool.id)
    assert refused.status_code == 403
    assert refused.json() == {
        "error": f"This agent's validity ended at {agent.valid_until:%Y-%m-%d %H:%M} UTC.",
        "hint": "Ask its owner to extend it on the agent's page in the AgentKey dashboard, or use another agent.",
    }
    assert api.me().status_code == 403
    assert (
        AuditEvent.objects.filter(action=Action.AUTH_REJECTED_VALIDITY_ENDED, agent_id=agent.id).count() == 1
    )
    assert not AuditEvent.objects.filter(
        action=Action.CREDENTIAL_VENDED, created_at__gt=agent.valid_until
    ).exists()

    assert agents_suspend_past_validity(now=timezone.now()) == 1
    assert agents_suspend_past_validity(now=timezone.now()) == 0, "a second run finds nothing"
    agent.refresh_from_db()
    assert agent.status == AgentStatus.SUSPENDED
    suspended = AuditEvent.objects.get(action=Action.AGENT_SUSPENDED, target_id=str(agent.id))
    assert suspended.metadata["reason"] == "validity ended"
    assert suspended.actor_label == "agent lifecycle"
    [body] = sent(hook, Event.AGENT_VALIDITY_ENDED)
    assert body["data"]["agent"] == "Billing-Agent"
    assert body["data"]["link"].endswith(f"/agents/{agent.id}/")
    assert [e.action for e in audit_log.new()].count(Action.AGENT_VALIDITY_CHANGED) == 1


def test_validity_must_end_in_the_future_and_can_be_cleared(org, owner, agent):
    with pytest.raises(ValidationFailed) as refused:
        agent_set_valid_until(agent=agent, valid_until=timezone.now() - timedelta(minutes=1), actor=owner)
    assert refused.value.message == VALID_UNTIL_PAST
    agent_set_valid_until(agent=agent, valid_until=timezone.now() + timedelta(hours=1), actor=owner)
    console(owner).post(reverse("console:agent_valid_until", kwargs={"agent_id": agent.id}), {"clear": "1"})
    agent.refresh_from_db()
    assert agent.valid_until is None
    changes = AuditEvent.objects.filter(action=Action.AGENT_VALIDITY_CHANGED).order_by("id")
    assert [e.metadata["to"] is None for e in changes] == [False, True]


# --- owner departure ------------------------------------------------------------------------------


def test_when_an_owner_is_removed_their_agents_are_suspended_and_announced(org, owner, tool, hook, audit_log):
    departing = factories.make_member(org, Role.APPROVER)
    theirs, their_api = owned_agent(org, owner, departing.user, tool)
    _, my_api = owned_agent(org, owner, owner.user, tool, name="Other-Agent")
    assert their_api.credentials(tool.id).status_code == 200

    response = console(owner).post(reverse("console:member_remove", kwargs={"member_id": departing.pk}))

    assert response.status_code == 302
    theirs.refresh_from_db()
    assert theirs.status == AgentStatus.SUSPENDED
    refused = their_api.credentials(tool.id)
    assert refused.status_code == 403
    assert refused.json()["error"] == AGENT_SUSPENDED.error
    assert my_api.credentials(tool.id).status_code == 200, "other owners' agents are untouched"
    actions = [(e.action, e.target_id) for e in audit_log.new()]
    assert (Action.MEMBER_REMOVED, str(departing.pk)) in actions
    suspended = AuditEvent.objects.get(action=Action.AGENT_SUSPENDED, target_id=str(theirs.id))
    assert suspended.metadata == {"reason": f"owner {departing.user.email} left"}
    assert suspended.actor_label == owner.user.email
    [body] = sent(hook, Event.AGENT_OWNER_DEPARTED)
    assert body["data"]["agent"] == "Billing-Agent"
    assert body["data"]["owner"] == departing.user.email
    assert body["data"]["outcome"] == "suspended"


def test_with_the_reassign_policy_the_owner_removing_takes_the_agents_over(org, owner, tool, hook, audit_log):
    org_set_lifecycle_policy(
        org=org,
        actor=owner,
        owner_departure=OwnerDeparture.REASSIGN,
        access_review_after=None,
        access_review_grace=org.access_review_grace,
    )
    factories.make_member(org, Role.OWNER)  # the longer-standing owner is not the one removing
    remover = factories.make_member(org, Role.OWNER)
    departing = factories.make_member(org, Role.APPROVER)
    agent, api = owned_agent(org, owner, departing.user, tool)

    console(remover).post(reverse("console:member_remove", kwargs={"member_id": departing.pk}))

    agent.refresh_from_db()
    assert (agent.status, agent.owner_id) == (AgentStatus.ACTIVE, remover.user_id)
    assert api.credentials(tool.id).status_code == 200, "a reassigned agent keeps working"
    changed = AuditEvent.objects.get(action=Action.AGENT_OWNER_CHANGED, target_id=str(agent.id))
    assert changed.metadata == {
        "from": departing.user.email,
        "to": remover.user.email,
        "reason": f"owner {departing.user.email} left",
    }
    [body] = sent(hook, Event.AGENT_OWNER_DEPARTED)
    assert body["data"]["outcome"] == f"reassigned to {remover.user.email}"
    assert body["data"]["new_owner"] == remover.user.email


def test_a_member_who_leaves_hands_their_agents_to_the_longest_standing_owner(org, owner, tool, hook):
    org_set_lifecycle_policy(
        org=org,
        actor=owner,
        owner_departure=OwnerDeparture.REASSIGN,
        access_review_after=None,
        access_review_grace=org.access_review_grace,
    )
    factories.make_member(org, Role.OWNER)  # a newer owner
    leaving = factories.make_member(org, Role.ADMIN)
    agent, api = owned_agent(org, owner, leaving.user, tool)

    response = console(leaving).post(reverse("console:member_remove", kwargs={"member_id": leaving.pk}))

    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.owner_id == owner.user_id
    assert api.me().status_code == 200
    assert AuditEvent.objects.filter(action=Action.MEMBER_LEFT).count() == 1
    [body] = sent(hook, Event.AGENT_OWNER_DEPARTED)
    assert body["data"]["new_owner"] == owner.user.email


def test_a_refused_removal_changes_no_agent_and_notifies_nobody(org, owner, tool, hook):
    agent, _ = owned_agent(org, owner, owner.user, tool)
    response = console(owner).post(reverse("console:member_remove", kwargs={"member_id": owner.pk}))
    assert response.status_code == 302  # the last owner cannot leave: reported on the page
    agent.refresh_from_db()
    assert agent.status == AgentStatus.ACTIVE
    assert not Delivery.objects.filter(event=Event.AGENT_OWNER_DEPARTED).exists()


def test_the_lifecycle_policy_is_set_on_the_members_page_and_audited(org, owner, audit_log):
    response = console(owner).post(
        reverse("console:org_lifecycle"),
        {"owner_departure": "reassign", "access_review_after": "90d", "access_review_grace": "14d"},
    )
    assert response.status_code == 302
    org.refresh_from_db()
    assert org.owner_departure == OwnerDeparture.REASSIGN
    assert (org.access_review_after, org.access_review_grace) == (timedelta(days=90), timedelta(days=14))
    settings_changed = [e.metadata for e in audit_log.new() if e.action == Action.ORG_SETTINGS_CHANGED]
    assert settings_changed == [
        {"setting": "owner_departure", "from": "suspend", "to": "reassign"},
        {"setting": "access_review_after", "from_seconds": None, "to_seconds": 90 * 86400},
        {"setting": "access_review_grace", "from_seconds": 7 * 86400, "to_seconds": 14 * 86400},
    ]
    page = console(owner).get(reverse("console:members")).content.decode()
    assert "Agent lifecycle and access reviews" in page
    bad = console(owner).post(
        reverse("console:org_lifecycle"),
        {"owner_departure": "delete", "access_review_after": "", "access_review_grace": "7d"},
    )
    assert bad.status_code == 302
    org.refresh_from_db()
    assert org.owner_departure == OwnerDeparture.REASSIGN, "an unknown policy changes nothing"


def test_deactivating_a_person_handles_their_agents_like_a_departure(org, owner, tool, operator):
    leaving = factories.make_member(org, Role.ADMIN)
    agent, api = owned_agent(org, owner, leaving.user, tool)
    leaving.user.is_active = False
    user_save(user=leaving.user, actor=operator, fields=["is_active"])
    agent.refresh_from_db()
    assert agent.status == AgentStatus.SUSPENDED
    assert api.me().status_code == 403
    suspended = AuditEvent.objects.get(action=Action.AGENT_SUSPENDED, target_id=str(agent.id))
    assert suspended.metadata == {"reason": f"owner {leaving.user.email} left"}
