"""Agent lifecycle flows that notify: a member leaving (their agents suspended or reassigned)
and agents whose validity ended.

The state changes are ``accounts`` services (``accounts.members.membership_remove``,
``accounts.lifecycle``); ``accounts`` may not import ``notifications``, so the interfaces call
these wrappers, which add the notification in the same transaction (the outbox row commits
with the change and is sent after commit).
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.lifecycle import (
    REASSIGNED,
    DepartedAgent,
    agent_suspend_past_validity,
    agents_past_validity,
)
from accounts.members import membership_remove
from accounts.models import Membership
from accounts.permissions import HumanActor
from agentkey.core.links import console_link
from notifications.models import Event
from notifications.services import notify


def member_remove(*, membership: Membership, actor: HumanActor) -> list[DepartedAgent]:
    """Remove a member (or leave); each agent they owned is suspended or reassigned and announced."""
    departing = membership.user.email
    with transaction.atomic():
        departed = membership_remove(membership=membership, actor=actor)
        for agent in departed:
            outcome = f"reassigned to {agent.new_owner}" if agent.outcome == REASSIGNED else "suspended"
            notify(
                org_id=membership.org_id,
                event=Event.AGENT_OWNER_DEPARTED,
                subject={
                    "agent": agent.agent_name,
                    "owner": departing,
                    "outcome": outcome,
                    "new_owner": agent.new_owner,
                    "decided_by": actor.audit_actor().label,
                },
                link=console_link("agent", agent_id=agent.agent_id),
            )
    return departed


def agents_suspend_past_validity(*, now: datetime | None = None) -> int:
    """The lifecycle job: suspend every active agent past ``valid_until`` and announce each.

    Agent authentication already refuses them from that second on; this makes the stored
    status, the audit log and the agent list agree.
    """
    now = now or timezone.now()
    suspended = 0
    for agent in agents_past_validity(now):
        with transaction.atomic():
            if not agent_suspend_past_validity(agent=agent, now=now):
                continue
            notify(
                org_id=agent.org_id,
                event=Event.AGENT_VALIDITY_ENDED,
                subject={
                    "agent": agent.name,
                    "valid_until": f"{agent.valid_until:%Y-%m-%d %H:%M} UTC" if agent.valid_until else "",
                },
                link=console_link("agent", agent_id=agent.id),
            )
        suspended += 1
    return suspended
