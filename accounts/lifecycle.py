"""Agent lifecycle: an accountable human owner, an optional end of validity, and what happens
to an agent when its owner leaves the organization; the organization's review policy.

(Services, split from services.py.) Notifications live above accounts, so the callers that
notify — ``grants.lifecycle`` — wrap these and send them in the same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import (
    ACCESS_REVIEW_AFTER_MAX,
    ACCESS_REVIEW_AFTER_MIN,
    ACCESS_REVIEW_GRACE_MAX,
    ACCESS_REVIEW_GRACE_MIN,
    Agent,
    AgentStatus,
    Membership,
    Organization,
    OwnerDeparture,
    Role,
    User,
)
from accounts.permissions import ROLE_CAPABILITIES, Capability, HumanActor, Operator, require
from agentkey.core.errors import FieldError, Message, ValidationFailed
from audit.models import Action
from audit.services import audit_record

OWNER_REQUIRED = Message(
    "An agent needs a human owner.",
    "Choose a member of the organization as its owner (manage.py createagent: --owner EMAIL).",
)
OWNER_NOT_MEMBER = Message(
    "{email} is not a member of this organization.",
    "An agent's owner must be a member of its organization: invite them first, or choose another member.",
)
VALID_UNTIL_PAST = Message(
    "The end of validity must be in the future.",
    "Choose a later date and time, or clear it so that the agent stays valid until suspended.",
)
OWNER_DEPARTURE_INVALID = Message(
    "Unknown owner-departure policy {value!r}.",
    "Choose suspend (the agent stops working) or reassign (an owner of the organization takes it over).",
)
REVIEW_AFTER_INVALID = Message(
    "Access reviews must be due after 1 to 365 days.",
    "Choose 30, 90, 180 or 365 days, or switch access reviews off.",
)
REVIEW_GRACE_INVALID = Message(
    "The review grace period must be between 1 hour and 90 days.",
    "Choose 1, 7, 14 or 30 days.",
)

#: How the lifecycle jobs and the departure handling appear in the audit log.
LIFECYCLE = Operator(label="agent lifecycle")

SUSPENDED, REASSIGNED = "suspended", "reassigned"


def org_member(org_id: uuid.UUID, user: User | None) -> Membership | None:
    if user is None:
        return None
    return Membership.objects.select_related("user").filter(org_id=org_id, user=user).first()


def owner_for_new_agent(*, org: Organization, actor: HumanActor, owner: User | None) -> User | None:
    """The owner a new agent gets: the one chosen, else the person creating it.

    A superuser acting outside their memberships (the Django admin) makes the organization's
    longest-standing owner accountable. An agent made by the system with no person behind it
    (``manage.py`` without ``--owner``, the demo seed) may stay ownerless only while the
    organization has no members at all: nobody could own it yet. Otherwise an owner is required.
    """
    if owner is None and isinstance(actor, Membership):
        return actor.user
    person = actor.acting_user if isinstance(actor, Operator) else None
    if owner is None and person is not None:
        # A superuser in the Django admin acting in an organization they are not a member of:
        # themselves if they are one, else the longest-standing owner (they can change it after).
        if org_member(org.id, person) is not None:
            return person
        first = longest_standing_owner(org.id)
        if first is not None:
            return first
    chosen = owner
    if chosen is None:
        if Membership.objects.filter(org=org).exists():
            raise ValidationFailed(OWNER_REQUIRED, details=[FieldError("owner", OWNER_REQUIRED.error)])
        return None
    if org_member(org.id, chosen) is None:
        message = OWNER_NOT_MEMBER.format(email=chosen.email)
        raise ValidationFailed(message, details=[FieldError("owner", message.error)])
    return chosen


def agent_set_owner(*, agent: Agent, owner: User, actor: HumanActor) -> Agent:
    """Make ``owner`` (a member of the agent's organization) accountable for the agent."""
    require(actor, Capability.MANAGE_AGENTS, agent.org_id)
    with transaction.atomic():
        # The membership row is locked like membership_remove locks it: an owner cannot leave
        # between this check and the change, leaving an active agent owned by a non-member.
        member = Membership.objects.select_for_update().filter(org_id=agent.org_id, user=owner)
        if not list(member.values_list("pk", flat=True)[:1]):
            message = OWNER_NOT_MEMBER.format(email=owner.email)
            raise ValidationFailed(message, details=[FieldError("owner", message.error)])
        locked = Agent.objects.select_for_update(of=("self",)).select_related("owner").get(pk=agent.pk)
        _change_owner(locked, owner, actor, reason="")
    agent.owner, agent.owner_id = locked.owner, locked.owner_id
    return locked


def _change_owner(locked: Agent, owner: User, actor: HumanActor, *, reason: str) -> None:
    previous = locked.owner
    if previous is not None and previous.pk == owner.pk:
        return
    locked.owner = owner
    locked.save(update_fields=["owner"])
    metadata = {"from": previous.email if previous else None, "to": owner.email}
    if reason:
        metadata["reason"] = reason
    audit_record(action=Action.AGENT_OWNER_CHANGED, actor=actor, target=locked, metadata=metadata)


def agent_set_valid_until(*, agent: Agent, valid_until: datetime | None, actor: HumanActor) -> Agent:
    """Set (or clear, with None) the moment after which the agent is refused and then suspended."""
    require(actor, Capability.MANAGE_AGENTS, agent.org_id)
    if valid_until is not None and valid_until <= timezone.now():
        raise ValidationFailed(VALID_UNTIL_PAST, details=[FieldError("valid_until", VALID_UNTIL_PAST.error)])
    with transaction.atomic():
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        previous = locked.valid_until
        if previous != valid_until:
            locked.valid_until = valid_until
            locked.save(update_fields=["valid_until"])
            audit_record(
                action=Action.AGENT_VALIDITY_CHANGED,
                actor=actor,
                target=locked,
                metadata={
                    "from": previous.isoformat() if previous else None,
                    "to": valid_until.isoformat() if valid_until else None,
                },
            )
    agent.valid_until = locked.valid_until
    return locked


def agents_past_validity(now: datetime) -> list[Agent]:
    """Active agents whose validity has ended (the partial index ``accounts_agent_valid_until_idx``)."""
    return list(
        Agent.objects.filter(status=AgentStatus.ACTIVE, valid_until__lte=now)
        .select_related("org")
        .order_by("valid_until")
    )


def agent_suspend_past_validity(*, agent: Agent, now: datetime) -> bool:
    """Suspend one agent whose validity ended; False when someone changed it meanwhile."""
    with transaction.atomic():
        updated = Agent.objects.filter(pk=agent.pk, status=AgentStatus.ACTIVE, valid_until__lte=now).update(
            status=AgentStatus.SUSPENDED, status_changed_at=now
        )
        if not updated:
            return False
        audit_record(
            action=Action.AGENT_SUSPENDED,
            actor=LIFECYCLE,
            target=agent,
            metadata={
                "reason": "validity ended",
                "valid_until": agent.valid_until.isoformat() if agent.valid_until else None,
            },
        )
    return True


# --- owner departure ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DepartedAgent:
    """What became of one agent whose owner left: labels for the notification."""

    agent_id: uuid.UUID
    agent_name: str
    outcome: str  # SUSPENDED or REASSIGNED
    new_owner: str = ""


def _successor(org_id: uuid.UUID, departing: User, actor: HumanActor) -> User | None:
    """Who takes over a departing owner's agents under the reassign policy.

    The person removing them, when they are an owner or admin (they made the decision and
    can manage agents); otherwise the longest-standing remaining owner (membership age).
    """
    if (
        isinstance(actor, Membership)
        and actor.org_id == org_id
        and actor.user_id != departing.pk
        and Capability.MANAGE_AGENTS in ROLE_CAPABILITIES.get(actor.role, frozenset())
    ):
        return actor.user
    return longest_standing_owner(org_id, besides=departing)


def longest_standing_owner(org_id: uuid.UUID, *, besides: User | None = None) -> User | None:
    """The active owner of the organization with the oldest membership (``besides`` excluded)."""
    owners = Membership.objects.select_related("user").filter(
        org_id=org_id, role=Role.OWNER, user__is_active=True
    )
    if besides is not None:
        owners = owners.exclude(user=besides)
    first = owners.order_by("created_at", "id").first()
    return first.user if first is not None else None


def agents_handle_owner_departure(
    *, org: Organization, departing: User, actor: HumanActor
) -> list[DepartedAgent]:
    """Suspend or reassign (``org.owner_departure``) every active agent ``departing`` owns in ``org``.

    Called by ``membership_remove`` inside its transaction, after the owner rows are locked,
    so the departure and what it does to the agents commit (or roll back) together.
    """
    policy = Organization.objects.values_list("owner_departure", flat=True).get(pk=org.pk)
    agents = list(
        Agent.objects.select_for_update(of=("self",))
        .select_related("owner")
        .filter(org=org, owner=departing, status=AgentStatus.ACTIVE)
        .order_by("name", "id")
    )
    if not agents:
        return []
    successor = _successor(org.id, departing, actor) if policy == OwnerDeparture.REASSIGN else None
    reason = f"owner {departing.email} left"
    done: list[DepartedAgent] = []
    now = timezone.now()
    for agent in agents:
        if successor is not None:
            _change_owner(agent, successor, actor, reason=reason)
            done.append(DepartedAgent(agent.id, agent.name, REASSIGNED, new_owner=successor.email))
            continue
        agent.status, agent.status_changed_at = AgentStatus.SUSPENDED, now
        agent.save(update_fields=["status", "status_changed_at"])
        audit_record(action=Action.AGENT_SUSPENDED, actor=actor, target=agent, metadata={"reason": reason})
        done.append(DepartedAgent(agent.id, agent.name, SUSPENDED))
    return done


# --- the organization's lifecycle policy ----------------------------------------------------------


def _seconds(value: timedelta | None) -> int | None:
    return int(value.total_seconds()) if value is not None else None


def org_set_lifecycle_policy(
    *,
    org: Organization,
    actor: HumanActor,
    owner_departure: str,
    access_review_after: timedelta | None,
    access_review_grace: timedelta,
) -> Organization:
    """What happens when an agent's owner leaves, and when access needs recertifying.

    Each changed setting is audited as ``org.settings_changed``. A shorter review age applies
    from the next run of the review job; reviews already open keep their start.
    """
    require(actor, Capability.MANAGE_ORG, org.id)
    if owner_departure not in OwnerDeparture.values:
        message = OWNER_DEPARTURE_INVALID.format(value=str(owner_departure)[:40])
        raise ValidationFailed(message, details=[FieldError("owner_departure", message.error)])
    if access_review_after is not None and not (
        ACCESS_REVIEW_AFTER_MIN <= access_review_after <= ACCESS_REVIEW_AFTER_MAX
    ):
        raise ValidationFailed(
            REVIEW_AFTER_INVALID, details=[FieldError("access_review_after", REVIEW_AFTER_INVALID.error)]
        )
    if not ACCESS_REVIEW_GRACE_MIN <= access_review_grace <= ACCESS_REVIEW_GRACE_MAX:
        raise ValidationFailed(
            REVIEW_GRACE_INVALID, details=[FieldError("access_review_grace", REVIEW_GRACE_INVALID.error)]
        )
    with transaction.atomic():
        locked = Organization.objects.select_for_update(no_key=True).get(pk=org.pk)
        changes: list[tuple[str, object, object]] = []
        if locked.owner_departure != owner_departure:
            changes.append(("owner_departure", locked.owner_departure, owner_departure))
            locked.owner_departure = owner_departure
        if locked.access_review_after != access_review_after:
            changes.append(
                (
                    "access_review_after",
                    _seconds(locked.access_review_after),
                    _seconds(access_review_after),
                )
            )
            locked.access_review_after = access_review_after
        if locked.access_review_grace != access_review_grace:
            changes.append(
                (
                    "access_review_grace",
                    _seconds(locked.access_review_grace),
                    _seconds(access_review_grace),
                )
            )
            locked.access_review_grace = access_review_grace
        if changes:
            locked.save(update_fields=[name for name, _, _ in changes])
        for name, before, after in changes:
            suffix = "" if name == "owner_departure" else "_seconds"
            audit_record(
                action=Action.ORG_SETTINGS_CHANGED,
                actor=actor,
                target=locked,
                metadata={"setting": name, f"from{suffix}": before, f"to{suffix}": after},
            )
    org.owner_departure = locked.owner_departure
    org.access_review_after = locked.access_review_after
    org.access_review_grace = locked.access_review_grace
    return locked
