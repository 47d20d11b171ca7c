"""Members of an organization: invitations, roles, leaving. (Services, split from services.py.)"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.lifecycle import DepartedAgent, agents_handle_owner_departure
from accounts.models import Invitation, Membership, Organization, Role, User
from accounts.permissions import Capability, HumanActor, acting_user, require
from agentkey.core.errors import Conflict, FieldError, Forbidden, Message, NotFound, ValidationFailed
from audit.models import Action
from audit.services import audit_record

INVITATION_TTL = timedelta(days=7)

ALREADY_A_MEMBER = Message(
    "{email} is already a member of this organization.", "Change their role on the members page instead."
)
INVITATION_UNUSABLE = Message(
    "This invitation link is not valid any more.",
    "It may have expired (links last 7 days), been used, or been revoked. Ask for a new invitation.",
)
INVITATION_OTHER_EMAIL = Message(
    "This invitation was sent to a different email address.",
    "Sign in with the invited address (and verify it), or ask the owner to invite the address you use.",
)
LAST_OWNER = Message(
    "An organization needs at least one owner.",
    "Make someone else an owner first, then change this role or leave.",
)
INVALID_ROLE = Message("Unknown role {role!r}.", "Choose owner, admin, approver or auditor.")
INVALID_EMAIL = Message("Enter a valid email address.", "Use the address the person signs in with.")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise ValidationFailed(
            INVALID_ROLE.format(role=value), details=[FieldError("role", "Unknown role.")]
        ) from None


@dataclass(frozen=True)
class IssuedInvitation:
    """A new invitation; ``token`` goes into the link and exists only here, once."""

    invitation: Invitation
    token: str = field(repr=False)


def invitation_create(*, org: Organization, email: str, role: str, actor: HumanActor) -> IssuedInvitation:
    """Invite someone by email. An earlier open invitation for the same address is replaced."""
    require(actor, Capability.MANAGE_MEMBERS, org.id)
    email = User.objects.normalize_email((email or "").strip()).lower()
    if "@" not in email or len(email) > 254:
        raise ValidationFailed(INVALID_EMAIL, details=[FieldError("email", INVALID_EMAIL.error)])
    chosen = _role(role)
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        if Membership.objects.filter(org=org, user__email__iexact=email).exists():
            raise Conflict(ALREADY_A_MEMBER.format(email=email))
        Invitation.objects.filter(
            org=org, email=email, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=now)
        invitation = Invitation.objects.create(
            org=org,
            email=email,
            role=chosen,
            token_digest=_digest(token),
            invited_by=acting_user(actor),
            expires_at=now + INVITATION_TTL,
        )
        audit_record(
            action=Action.MEMBER_INVITED, actor=actor, target=invitation, metadata={"role": chosen.value}
        )
        inviter = actor.audit_actor().label
        transaction.on_commit(lambda: _send_invitation(invitation, token, inviter))
    return IssuedInvitation(invitation=invitation, token=token)


def _send_invitation(invitation: Invitation, token: str, inviter: str) -> None:
    link = settings.AGENTKEY_PUBLIC_URL + reverse("console:invitation", kwargs={"token": token})
    context = {"invitation": invitation, "org": invitation.org, "link": link, "inviter": inviter}
    send_mail(
        subject=f"[AgentKey] You are invited to {invitation.org.name}",
        message=render_to_string("email/invitation.txt", context),
        from_email=None,
        recipient_list=[invitation.email],
    )


def invitation_by_token(token: str) -> Invitation | None:
    return Invitation.objects.select_related("org").filter(token_digest=_digest(token)).first()


def invitation_accept(*, token: str, user: User) -> Membership:
    """Join with an invitation link: the invited address must be one of the user's verified addresses."""
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update()
            .select_related("org")
            .filter(token_digest=_digest(token))
            .first()
        )
        if invitation is None or not invitation.is_open():
            raise NotFound(INVITATION_UNUSABLE)
        verified = EmailAddress.objects.filter(
            user=user, email__iexact=invitation.email, verified=True
        ).exists()
        if not verified:
            raise Forbidden(INVITATION_OTHER_EMAIL)
        if Membership.objects.filter(org=invitation.org, user=user).exists():
            raise Conflict(ALREADY_A_MEMBER.format(email=invitation.email))
        membership = Membership.objects.create(org=invitation.org, user=user, role=invitation.role)
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        membership = Membership.objects.select_related("user", "org").get(pk=membership.pk)
        audit_record(
            action=Action.MEMBER_JOINED,
            actor=membership,
            target=membership,
            metadata={"role": invitation.role, "invitation_id": str(invitation.id)},
        )
    return membership


def invitation_revoke(*, invitation: Invitation, actor: HumanActor) -> Invitation:
    require(actor, Capability.MANAGE_MEMBERS, invitation.org_id)
    with transaction.atomic():
        updated = Invitation.objects.filter(
            pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        if not updated:
            raise Conflict(INVITATION_UNUSABLE)
        audit_record(action=Action.MEMBER_INVITATION_REVOKED, actor=actor, target=invitation)
    invitation.refresh_from_db()
    return invitation


def _lock_owners(org_id: uuid.UUID) -> int:
    """Lock the organization's owner rows and count them (no concurrent demotion can slip past)."""
    return len(list(Membership.objects.select_for_update().filter(org_id=org_id, role=Role.OWNER)))


def membership_change_role(*, membership: Membership, role: str, actor: HumanActor) -> Membership:
    require(actor, Capability.MANAGE_MEMBERS, membership.org_id)
    chosen = _role(role)
    with transaction.atomic():
        owners = _lock_owners(membership.org_id)
        locked = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
        if locked.role == chosen:
            return locked
        if locked.role == Role.OWNER and owners <= 1:
            raise Conflict(LAST_OWNER)
        was = locked.role
        locked.role = chosen
        locked.save(update_fields=["role"])
        audit_record(
            action=Action.MEMBER_ROLE_CHANGED,
            actor=actor,
            target=locked,
            metadata={"from": was, "to": chosen.value},
        )
    return locked


def membership_remove(*, membership: Membership, actor: HumanActor) -> list[DepartedAgent]:
    """Remove a member, or leave (anyone may remove themselves). The last owner cannot go.

    In the same transaction, the agents the person owned in the organization are suspended
    or reassigned (``Organization.owner_departure``); the result says which, for the
    notification ``grants.lifecycle.member_remove`` sends.
    """
    leaving = isinstance(actor, Membership) and actor.pk == membership.pk
    if not leaving:
        require(actor, Capability.MANAGE_MEMBERS, membership.org_id)
    with transaction.atomic():
        owners = _lock_owners(membership.org_id)
        locked = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
        if locked.role == Role.OWNER and owners <= 1:
            raise Conflict(LAST_OWNER)
        audit_record(
            action=Action.MEMBER_LEFT if leaving else Action.MEMBER_REMOVED,
            actor=actor,
            target=locked,
            metadata={"role": locked.role},
        )
        departed = agents_handle_owner_departure(org=locked.org, departing=locked.user, actor=actor)
        locked.delete()
    return departed
