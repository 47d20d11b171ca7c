"""Email to the people who can act on an event: the organization-wide setting and its recipients."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from allauth.account.models import EmailAddress
from django.db import transaction

from accounts.models import Organization
from accounts.permissions import ROLE_CAPABILITIES, Capability, HumanActor, acting_user, require
from agentkey.core.errors import FieldError, Message, ValidationFailed
from audit.models import Action
from audit.services import audit_record
from notifications.models import SUBSCRIBABLE_EVENTS, EmailSettings, Event

EMAIL_EVENTS_EMPTY = Message(
    "Choose at least one event to email about.",
    "Pick events such as new access requests, or switch email notifications off.",
)
EMAIL_EVENTS_INVALID = Message("Unknown event {event!r}.", "Choose events from the list.")

#: Who can act on each event: access requests go to those who decide them, suggestions to
#: those who manage tools (an approver cannot add a tool or change a usage guide).
EVENT_CAPABILITY: dict[str, Capability] = {
    Event.ACCESS_REQUESTED: Capability.DECIDE_GRANTS,
    Event.ACCESS_APPROVED: Capability.DECIDE_GRANTS,
    Event.ACCESS_DENIED: Capability.DECIDE_GRANTS,
    Event.ACCESS_REVOKED: Capability.DECIDE_GRANTS,
    Event.TOOL_SUGGESTED: Capability.MANAGE_TOOLS,
    Event.GUIDE_SUGGESTED: Capability.MANAGE_TOOLS,
    Event.AGENT_OWNER_DEPARTED: Capability.MANAGE_AGENTS,
    Event.AGENT_VALIDITY_ENDED: Capability.MANAGE_AGENTS,
    Event.ACCESS_REVIEW_DUE: Capability.DECIDE_GRANTS,
    Event.ACCESS_REVIEW_EXPIRED: Capability.DECIDE_GRANTS,
}


def email_settings_for(org_id: uuid.UUID) -> EmailSettings:
    """The organization's setting; an unsaved row with the defaults when nobody changed it."""
    return EmailSettings.objects.filter(org_id=org_id).first() or EmailSettings(org_id=org_id)


def email_recipients(*, org_id: uuid.UUID, event: str) -> list[str]:
    """One verified address (the primary one first) per active member who can act on ``event``."""
    capability = EVENT_CAPABILITY.get(event)
    if capability is None:
        return []
    roles = [role for role, capabilities in ROLE_CAPABILITIES.items() if capability in capabilities]
    rows = (
        EmailAddress.objects.filter(
            verified=True,
            user__is_active=True,
            user__memberships__org_id=org_id,
            user__memberships__role__in=roles,
        )
        .order_by("user_id", "-primary", "id")
        .values_list("user_id", "email")
    )
    chosen: dict[object, str] = {}
    for user_id, email in rows:
        chosen.setdefault(user_id, email)
    return sorted(set(chosen.values()))


def _clean_email_events(events: Iterable[str], *, required: bool) -> list[str]:
    allowed = [str(event) for event in SUBSCRIBABLE_EVENTS]
    wanted = set()
    for event in events:
        if event not in allowed:
            message = EMAIL_EVENTS_INVALID.format(event=str(event)[:40])
            raise ValidationFailed(message, details=[FieldError("events", message.error)])
        wanted.add(event)
    if required and not wanted:
        raise ValidationFailed(EMAIL_EVENTS_EMPTY, details=[FieldError("events", EMAIL_EVENTS_EMPTY.error)])
    return [event for event in allowed if event in wanted]


def email_settings_update(
    *, org: Organization, actor: HumanActor, enabled: bool, events: Iterable[str]
) -> EmailSettings:
    """Switch email notifications on or off and choose their events. No change, no audit event."""
    require(actor, Capability.MANAGE_TOOLS, org.id)
    chosen = _clean_email_events(events, required=enabled)
    with transaction.atomic():
        current, _ = EmailSettings.objects.select_for_update().get_or_create(org=org)
        if current.enabled == enabled and current.events == chosen:
            return current
        current.enabled, current.events, current.updated_by = enabled, chosen, acting_user(actor)
        current.save()
        audit_record(
            action=Action.NOTIFICATION_EMAIL_UPDATED,
            actor=actor,
            target=current,
            metadata={"enabled": enabled, "events": chosen},
        )
    return current
