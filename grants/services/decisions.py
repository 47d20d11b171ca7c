"""The human side of access: approve, deny, revoke, extend, assign; and the expiry job."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import Agent, Organization
from accounts.permissions import Capability, HumanActor, acting_user, require
from agentkey.core.durations import human_duration
from agentkey.core.errors import Conflict, FieldError, ValidationFailed
from audit.models import Action
from audit.services import SystemActor, audit_record
from catalog.models import CredentialMode, Tool
from grants import quorum
from grants.anomalies import refuse_canary
from grants.models import AccessGrant, GrantApproval, GrantStatus
from grants.services.common import (
    AGENT_NOT_IN_ORG,
    ASSIGN_ALREADY_APPROVED,
    CREDENTIAL_NOT_ALLOWED,
    CREDENTIAL_REQUIRED,
    DENIAL_REASON_REQUIRED,
    EXPIRY_SLACK,
    EXTEND_NO_EXPIRY,
    EXTEND_NOT_APPROVED,
    EXTEND_OVER_LIMIT,
    EXTENSION_INVALID,
    GRANT_NOT_APPROVED,
    GRANT_NOT_PENDING,
    LONGER_THAN_ASKED,
    MAX_DURATION,
    MIN_DURATION,
    _announce_decision,
    _as_requested,
    _check_expiry,
    _check_org_limit,
    _detach_secret,
    _expiry_label,
    _save_dropping,
    grant_duration_limit,
    revoke_locked,
)
from notifications.models import Event
from vault.services import secret_create

# --- expiry ---------------------------------------------------------------------------------------

EXPIRY_JOB = SystemActor(label="expiry job")


def grants_expire_due(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Mark approved grants past ``expires_at`` as expired and delete their per-agent credentials.

    The vend already refuses them (``effective_status``); this makes the stored
    state, the audit log and the vault agree, so credential material does not
    outlive the access it was for. Locked rows (a concurrent decision) are
    skipped and picked up on the next run.
    """
    now = now or timezone.now()
    expired = 0
    while True:
        with transaction.atomic():
            due = list(
                AccessGrant.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("agent", "tool", "secret")
                .filter(status=GrantStatus.APPROVED, expires_at__lte=now)
                .order_by("expires_at")[:batch_size]
            )
            for grant in due:
                old_secret = _detach_secret(grant)
                grant.status = GrantStatus.EXPIRED
                _save_dropping(grant, old_secret)
                audit_record(
                    action=Action.GRANT_EXPIRED,
                    actor=EXPIRY_JOB,
                    target=grant,
                    metadata={
                        "tool_name": grant.tool.name,
                        "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
                    },
                )
        expired += len(due)
        if len(due) < batch_size:
            return expired


# --- human side ------------------------------------------------------------------------------------


def _decided(grant: AccessGrant, actor: HumanActor, now: datetime) -> None:
    grant.decided_by = acting_user(actor)
    grant.decided_by_label = actor.audit_actor().label
    grant.decided_at = now


def _lock_pending(grant: AccessGrant) -> AccessGrant:
    locked = (
        AccessGrant.objects.select_for_update(of=("self",))
        .select_related("agent", "tool", "org")
        .get(pk=grant.pk)
    )
    if locked.status != GrantStatus.PENDING:
        raise Conflict(GRANT_NOT_PENDING.format(status=locked.effective_status()))
    return locked


class AsRequested(enum.Enum):
    """Sentinel: approve for the duration the agent asked for (no expiry if it asked for none)."""

    AS_REQUESTED = "as requested"


AS_REQUESTED = AsRequested.AS_REQUESTED


def grant_approve(
    *,
    grant: AccessGrant,
    reviewer: HumanActor,
    expires_at: datetime | AsRequested | None = AS_REQUESTED,
    credential: str | None = None,
) -> AccessGrant:
    """Approve a pending request until ``expires_at``; ``None`` means no expiry, and the
    default applies the agent's requested duration (if any). Exactly one of several
    concurrent decisions wins: the row is locked and re-checked.

    Approvers choose or shorten: when the agent asked for a duration, an approval may not
    end later than that (extending afterwards is its own audited decision). Nothing ends
    later than the organization's maximum; "as requested" is shortened to it.

    A tool that requires N approvals (``grants.quorum``) records this approval for the
    current request cycle and stays pending until N distinct eligible people approved;
    the grant then ends at the earliest end any of them chose, and a per-agent credential
    is given with (and only with) the approval that completes the quorum.
    """
    require(reviewer, Capability.DECIDE_GRANTS, grant.org_id)
    now = timezone.now()
    if not isinstance(expires_at, AsRequested):
        _check_expiry(expires_at, now)
    with transaction.atomic():
        locked = _lock_pending(grant)
        # The tool as it is now, read with the locked grant (the caller's copy may predate a
        # canary mark, which revokes the grant: grants.services.tool_edit).
        refuse_canary(locked.tool)
        required = locked.tool.required_approvals
        approver = quorum.Approver.of(reviewer)
        prior = quorum.cycle_approvals(locked)
        quorum.check_not_lapsed(grant=locked, prior=prior, now=now)
        quorum.check_separation(grant=locked, approver=approver)
        quorum.check_not_already(grant=locked, approver=approver, prior=prior)
        completes = len(prior) + 1 >= required
        _check_approval_credential(locked, credential, approvals=len(prior) + 1, completes=completes)
        if isinstance(expires_at, AsRequested):
            expires_at = _as_requested(locked, locked.org, now)
        asked = locked.requested_duration
        if asked is not None and (expires_at is None or expires_at > now + asked + EXPIRY_SLACK):
            msg = LONGER_THAN_ASKED.format(asked=human_duration(asked))
            raise ValidationFailed(msg, details=[FieldError("expires_at", msg.error)])
        _check_org_limit(expires_at, now, locked.org)
        if completes:
            quorum.check_choices_current(prior, now)
        approvals = [
            *prior,
            quorum.approval_record(grant=locked, approver=approver, expires_at=expires_at, now=now),
        ]
        if required > 1:
            _audit_approval(locked, reviewer, approvals, expires_at)
        if not completes:
            quorum.announce_partial(grant=locked, approver=approver, approvals=len(approvals))
            return locked
        # The grant ends at the earliest end any approver of the quorum chose (none: no expiry).
        expires_at = quorum.quorum_expiry(approvals)
        per_agent = locked.tool.credential_mode == CredentialMode.PER_AGENT
        locked.status = GrantStatus.APPROVED
        locked.certified_at, locked.review_requested_at = now, None  # access reviews count from here
        locked.expires_at = expires_at
        locked.denial_reason = ""
        if per_agent and credential:
            locked.secret = secret_create(plaintext=credential)
        _decided(locked, reviewer, now)
        locked.save()
        audit_record(
            action=Action.GRANT_APPROVED,
            actor=reviewer,
            target=locked,
            metadata={
                "from": GrantStatus.PENDING,
                "tool_name": locked.tool.name,
                "expires_at": expires_at.isoformat() if expires_at else None,
                **(
                    {"required": required, "approvers": [a.approver_label for a in approvals]}
                    if required > 1
                    else {}
                ),
            },
        )
        _announce_decision(locked, Event.ACCESS_APPROVED, reviewer, access=_expiry_label(expires_at))
    return locked


def _check_approval_credential(
    grant: AccessGrant, credential: str | None, *, approvals: int, completes: bool
) -> None:
    """A per-agent credential comes with the approval that completes the quorum, and only with it."""
    required = grant.tool.required_approvals
    if grant.tool.credential_mode != CredentialMode.PER_AGENT:
        if credential:
            raise ValidationFailed(
                CREDENTIAL_NOT_ALLOWED, details=[FieldError("credential", CREDENTIAL_NOT_ALLOWED.error)]
            )
        return
    msg = None
    if completes and not credential:
        msg = (
            CREDENTIAL_REQUIRED
            if required == 1
            else quorum.CREDENTIAL_COMPLETES_QUORUM.format(required=required)
        )
    elif not completes and credential:
        msg = quorum.CREDENTIAL_ON_LAST_APPROVAL.format(approvals=approvals, required=required)
    if msg is not None:
        raise ValidationFailed(msg, details=[FieldError("credential", msg.error)])


def _audit_approval(
    grant: AccessGrant, reviewer: HumanActor, approvals: list[GrantApproval], chosen: datetime | None
) -> None:
    """With a quorum, each approval is its own audit event (``grant.approved`` follows the last)."""
    audit_record(
        action=Action.GRANT_APPROVAL_RECORDED,
        actor=reviewer,
        target=grant,
        metadata={
            "tool_name": grant.tool.name,
            "approvals": len(approvals),
            "required": grant.tool.required_approvals,
            "expires_at": chosen.isoformat() if chosen else None,
        },
    )


def grant_deny(*, grant: AccessGrant, reviewer: HumanActor, reason: str) -> AccessGrant:
    require(reviewer, Capability.DECIDE_GRANTS, grant.org_id)
    reason = " ".join((reason or "").split())
    if not 5 <= len(reason) <= 500:
        raise ValidationFailed(
            DENIAL_REASON_REQUIRED, details=[FieldError("reason", DENIAL_REASON_REQUIRED.hint)]
        )
    now = timezone.now()
    with transaction.atomic():
        locked = _lock_pending(grant)
        locked.status = GrantStatus.DENIED
        locked.denial_reason = reason
        _decided(locked, reviewer, now)
        locked.save()
        audit_record(
            action=Action.GRANT_DENIED,
            actor=reviewer,
            target=locked,
            metadata={"from": GrantStatus.PENDING, "tool_name": locked.tool.name, "reason": reason},
        )
        _announce_decision(locked, Event.ACCESS_DENIED, reviewer, reason=reason)
    return locked


def grant_revoke(*, grant: AccessGrant, actor: HumanActor, reason: str = "") -> AccessGrant:
    """Take access away. The agent's very next vend gets 403."""
    require(actor, Capability.DECIDE_GRANTS, grant.org_id)
    now = timezone.now()
    with transaction.atomic():
        locked = (
            AccessGrant.objects.select_for_update(of=("self",))
            .select_related("agent", "tool", "secret")
            .get(pk=grant.pk)
        )
        if locked.status != GrantStatus.APPROVED:
            raise Conflict(GRANT_NOT_APPROVED.format(status=locked.status))
        revoke_locked(locked, actor=actor, reason=reason, now=now)
    return locked


def grant_extend(*, grant: AccessGrant, actor: HumanActor, by: timedelta) -> AccessGrant:
    """Push the expiry of approved, unexpired, time-bound access back by ``by``.

    The new expiry may be at most the organization's maximum (and 30 days) from now.
    The row is locked, so an extension and the expiry job or a revoke never interleave.
    """
    require(actor, Capability.DECIDE_GRANTS, grant.org_id)
    if not MIN_DURATION <= by <= MAX_DURATION:
        raise ValidationFailed(EXTENSION_INVALID, details=[FieldError("by", EXTENSION_INVALID.error)])
    now = timezone.now()
    with transaction.atomic():
        locked = (
            AccessGrant.objects.select_for_update(of=("self",))
            .select_related("agent", "tool", "org")
            .get(pk=grant.pk)
        )
        status = locked.effective_status(now)
        if status != GrantStatus.APPROVED:
            raise Conflict(EXTEND_NOT_APPROVED.format(status=status))
        previous = locked.expires_at
        if previous is None:
            raise Conflict(EXTEND_NO_EXPIRY)
        limit = grant_duration_limit(locked.org)
        extended = previous + by
        if extended > now + limit:
            msg = EXTEND_OVER_LIMIT.format(by=human_duration(by), limit=human_duration(limit))
            raise ValidationFailed(msg, details=[FieldError("by", msg.error)])
        locked.expires_at = extended
        locked.save(update_fields=["expires_at", "updated_at"])
        audit_record(
            action=Action.GRANT_EXTENDED,
            actor=actor,
            target=locked,
            metadata={
                "tool_name": locked.tool.name,
                "by_seconds": int(by.total_seconds()),
                "from": previous.isoformat(),
                "expires_at": extended.isoformat(),
            },
        )
    return locked


def grant_assign(
    *,
    agent: Agent,
    tool: Tool,
    actor: HumanActor,
    expires_at: datetime | None = None,
    credential: str | None = None,
) -> AccessGrant:
    """Give an agent access without waiting for it to ask.

    Refused for a tool that needs several approvers: one person cannot stand in for a quorum.
    """
    require(actor, Capability.DECIDE_GRANTS, tool.org_id)
    if agent.org_id != tool.org_id:
        raise ValidationFailed(AGENT_NOT_IN_ORG)
    refuse_canary(tool)
    if tool.required_approvals > 1:
        raise Conflict(
            quorum.QUORUM_NEEDS_REQUEST.format(
                tool=tool.name, required=tool.required_approvals, tool_id=tool.id
            )
        )
    now = timezone.now()
    _check_expiry(expires_at, now)
    per_agent = tool.credential_mode == CredentialMode.PER_AGENT
    if per_agent and not credential:
        raise ValidationFailed(
            CREDENTIAL_REQUIRED, details=[FieldError("credential", CREDENTIAL_REQUIRED.error)]
        )
    if not per_agent and credential:
        raise ValidationFailed(
            CREDENTIAL_NOT_ALLOWED, details=[FieldError("credential", CREDENTIAL_NOT_ALLOWED.error)]
        )
    _check_org_limit(expires_at, now, Organization.objects.get(pk=tool.org_id))
    with transaction.atomic():
        # The tool row's lock orders this with tool_edit marking the tool a canary: either that
        # waits and then revokes this grant, or this waits and sees the flag.
        refuse_canary(Tool.objects.select_for_update(no_key=True).get(pk=tool.pk))
        grant, created = AccessGrant.objects.select_for_update().get_or_create(
            agent=agent, tool=tool, defaults={"org_id": tool.org_id, "reason": "", "requested_at": now}
        )
        was = "none" if created else grant.effective_status(now)
        if was == GrantStatus.APPROVED:
            raise Conflict(ASSIGN_ALREADY_APPROVED)
        old_secret = _detach_secret(grant)
        grant.status = GrantStatus.APPROVED
        grant.certified_at, grant.review_requested_at = now, None  # access reviews count from here
        grant.expires_at = expires_at
        grant.denial_reason = ""
        if per_agent and credential:
            grant.secret = secret_create(plaintext=credential)
        _decided(grant, actor, now)
        _save_dropping(grant, old_secret)
        grant.agent, grant.tool = agent, tool
        audit_record(
            action=Action.GRANT_ASSIGNED,
            actor=actor,
            target=grant,
            metadata={
                "from": was,
                "tool_name": tool.name,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
        _announce_decision(grant, Event.ACCESS_APPROVED, actor, access=_expiry_label(expires_at))
    return grant
