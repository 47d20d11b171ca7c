"""audit_record: who, what, which organization, and the request it came from (DESIGN §3, STYLE §3)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import pytest
from django.db import transaction

from agentkey.core import context
from audit.models import Action, ActorType, AuditEvent
from audit.services import AuditRef, SystemActor, audit_record
from grants.models import AccessGrant
from grants.services import grant_assign

pytestmark = pytest.mark.django_db

REQUEST_ID = "abcdefgh12345678"


@dataclass(frozen=True)
class Subject:
    """Anything with an audit_ref() can be a target; labels are snapshots."""

    label: str
    org_id: uuid.UUID | None = None

    def audit_ref(self) -> AuditRef:
        return AuditRef(type="thing", id="thing-1", label=self.label, org_id=self.org_id)

    def audit_actor(self) -> AuditRef:
        return AuditRef(type=ActorType.HUMAN, id="person-1", label=self.label, org_id=self.org_id)


def test_event_snapshots_actor_and_target(agent, tool, audit_log) -> None:
    event = audit_record(
        action=Action.GRANT_REQUESTED, actor=agent, target=tool, metadata={"reason": "filing bugs"}
    )
    stored = AuditEvent.objects.get(id=event.id)
    assert (stored.actor_type, stored.actor_id, stored.actor_label) == (
        ActorType.AGENT,
        str(agent.id),
        agent.name,
    )
    assert (stored.target_type, stored.target_id, stored.target_label) == ("tool", str(tool.id), tool.name)
    assert stored.action == "grant.requested"
    assert stored.action_label == "Access requested"
    assert stored.metadata == {"reason": "filing bugs"}
    assert stored.org_id == tool.org_id
    assert stored.created_at is not None
    assert audit_log.new() == [stored]


def test_org_comes_from_the_target_first(stranger, tool) -> None:
    event = audit_record(action=Action.GRANT_REQUESTED, actor=stranger.agent, target=tool)
    assert event.org_id == tool.org_id != stranger.agent.org_id


def test_org_comes_from_the_actor_without_a_target(agent) -> None:
    event = audit_record(action=Action.AGENT_KEY_ROTATED, actor=agent)
    assert event.org_id == agent.org_id
    assert (event.target_type, event.target_id, event.target_label) == ("", "", "")


def test_org_comes_from_the_actor_when_the_target_has_none(agent) -> None:
    event = audit_record(action=Action.TOOL_UPDATED, actor=agent, target=Subject("no org"))
    assert event.org_id == agent.org_id


def test_explicit_org_wins(agent, tool, other_org) -> None:
    event = audit_record(action=Action.TOOL_UPDATED, actor=agent, target=tool, org_id=other_org.id)
    assert event.org_id == other_org.id


def test_system_event_without_target_has_no_org() -> None:
    event = audit_record(action=Action.MASTER_KEY_ROTATED, actor=SystemActor(label="manage.py (ops)"))
    assert event.org_id is None
    assert (event.actor_type, event.actor_id, event.actor_label) == (ActorType.SYSTEM, "", "manage.py (ops)")


def test_long_labels_are_clipped_to_the_column(org) -> None:
    long = "L" * 199 + "XYZ" + "z" * 300
    event = audit_record(action=Action.TOOL_UPDATED, actor=Subject(long), target=Subject(long, org.id))
    stored = AuditEvent.objects.get(id=event.id)
    for label in (stored.actor_label, stored.target_label):
        assert len(label) == 200
        assert label == "L" * 199 + "…"
    exact = "E" * 200
    fits = audit_record(action=Action.TOOL_UPDATED, actor=Subject(exact), target=Subject(exact, org.id))
    assert AuditEvent.objects.get(id=fits.id).target_label == exact
    assert AuditEvent.objects.get(id=fits.id).actor_label == exact


def test_request_context_is_recorded(agent) -> None:
    token = context.bind(context.RequestContext(request_id="ctx-0001-request", ip="203.0.113.7"))
    try:
        inside = audit_record(action=Action.AGENT_KEY_ROTATED, actor=agent)
    finally:
        context.reset(token)
    outside = audit_record(action=Action.AGENT_KEY_ROTATED, actor=agent)

    inside.refresh_from_db()
    outside.refresh_from_db()
    assert (inside.request_id, inside.ip) == ("ctx-0001-request", "203.0.113.7")
    assert (outside.request_id, outside.ip) == ("", None)


def test_a_rolled_back_change_leaves_no_event(agent) -> None:
    class Boom(Exception):
        pass

    def change_that_fails() -> None:
        with transaction.atomic():
            audit_record(action=Action.AGENT_KEY_ROTATED, actor=agent)
            raise Boom

    before = AuditEvent.objects.count()
    with pytest.raises(Boom):
        change_that_fails()
    assert AuditEvent.objects.count() == before


# --- through HTTP: the middleware binds the request -----------------------------------------------


def test_agent_request_records_the_request_id_and_client_ip(api, agent, tool, audit_log) -> None:
    response = api.post(
        f"/api/tools/{tool.id}/request", {"reason": "I need it to file bugs."}, **{"X-Request-ID": REQUEST_ID}
    )
    assert response.status_code == 201
    assert response["X-Request-ID"] == REQUEST_ID
    [event] = audit_log.new()
    assert event.action == Action.GRANT_REQUESTED
    assert (event.request_id, event.ip) == (REQUEST_ID, "127.0.0.1")
    assert event.org_id == agent.org_id
    assert event.actor_id == str(agent.id)
    assert event.target_id == str(AccessGrant.objects.get(agent=agent, tool=tool).id)


def test_vend_records_the_request_id_and_client_ip(api, agent, tool, operator, audit_log) -> None:
    grant_assign(agent=agent, tool=tool, actor=operator)
    audit_log.mark()
    response = api.credentials(tool.id, **{"X-Request-ID": REQUEST_ID})
    assert response.status_code == 200
    [event] = audit_log.new()
    assert event.action == Action.CREDENTIAL_VENDED
    assert (event.request_id, event.ip) == (REQUEST_ID, "127.0.0.1")
    assert event.metadata["tool_id"] == str(tool.id)


@pytest.mark.parametrize("offered", ["short", "has spaces in it!", "x" * 65, "abc/def/ghi"])
def test_an_unusable_request_id_is_replaced_by_a_fresh_one(api, tool, audit_log, offered: str) -> None:
    response = api.post(
        f"/api/tools/{tool.id}/request", {"reason": "I need it to file bugs."}, **{"X-Request-ID": offered}
    )
    assert response.status_code == 201
    [event] = audit_log.new()
    assert event.request_id == response["X-Request-ID"] != offered
    assert re.fullmatch(r"[0-9a-f]{32}", event.request_id)
