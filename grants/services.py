"""Access grants: request, approve, deny, revoke, assign; the credential vend."""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import GRANT_DURATION_MAX, GRANT_DURATION_MIN, Agent, AgentStatus, Organization
from accounts.permissions import Capability, HumanActor, acting_user, require
from agentkey.core.durations import format_duration, human_duration
from agentkey.core.errors import Conflict, FieldError, Forbidden, Message, NotFound, ValidationFailed
from agentkey.core.links import console_link
from audit.models import Action
from audit.services import SystemActor, audit_record
from catalog.models import AuthType, CredentialMode, Tool, ToolSuggestion
from catalog.services import (
    Backing,
    GuideSuggested,
    ToolCreated,
    guide_suggest,
    suggestion_accept,
    tool_create,
)
from grants import quorum
from grants.anomalies import after_request, refuse_canary
from grants.models import AccessGrant, GrantApproval, GrantStatus
from notifications.models import Event
from notifications.services import notify
from vault.models import Secret
from vault.services import secret_create, secret_delete, secret_reveal

MIN_DURATION = GRANT_DURATION_MIN
MAX_DURATION = GRANT_DURATION_MAX
# A view computes an expiry a moment before the service checks it.
EXPIRY_SLACK = timedelta(minutes=1)

TOOL_NOT_FOUND = Message(
    "Tool not found.",
    "Check the tool ID. Use GET /api/tools to browse available tools and their IDs.",
)
ALREADY_PENDING = Message(
    "You already have a pending request for this tool.",
    "Wait for a human admin to review your existing request. Check status via GET /api/tools.",
)
ALREADY_APPROVED = Message(
    "You already have access to this tool.",
    "Fetch your credentials via GET /api/tools/{tool_id}/credentials.",
)
NOT_APPROVED = "This tool has not been approved for the agent."
NOT_APPROVED_HINTS: dict[str | None, str] = {
    None: "Request access first via POST /api/tools/{tool_id}/request with a reason.",
    GrantStatus.PENDING: "Your request is pending human review. Check status via GET /api/tools.",
    GrantStatus.DENIED: "Your request was denied. Check GET /api/tools for the denial_reason. "
    "You can submit a new request with a different justification.",
    GrantStatus.REVOKED: "Your access was revoked. Submit a new request via POST /api/tools/{tool_id}/request.",
    GrantStatus.EXPIRED: "Your access expired. Submit a new request via POST /api/tools/{tool_id}/request.",
}
GUIDE_NEEDS_APPROVAL = Message(
    NOT_APPROVED, "Use this endpoint only after the tool has been approved and used."
)
CREDENTIAL_NOT_CONFIGURED = Message(
    "Credential is not configured.",
    "A human admin must add the credential for this tool in the AgentKey dashboard; retry after they do.",
)
GRANT_NOT_PENDING = Message(
    "This request is {status}, not pending.",
    "Refresh: someone else already decided it. Only pending requests can be approved or denied.",
)
GRANT_NOT_APPROVED = Message(
    "This grant is {status}, not approved.",
    "Only approved access can be revoked.",
)
CREDENTIAL_REQUIRED = Message(
    "This tool uses a credential per agent.",
    "Provide the credential for this agent when you approve.",
)
CREDENTIAL_NOT_ALLOWED = Message(
    "This tool uses one shared credential.",
    "Do not pass a credential on approval; rotate the tool's credential instead.",
)
EXPIRY_INVALID = Message(
    "The expiry must be between 1 hour and 30 days from now.",
    "Choose a duration such as 1h, 8h, 1d, 7d or 30d, or no expiry.",
)
OVER_ORG_MAXIMUM = Message(
    "This organization allows access for at most {limit}.",
    "Choose a duration of {limit} or less (no expiry is not allowed while a maximum is set). "
    "An owner or admin can change the maximum on the Members page.",
)
LONGER_THAN_ASKED = Message(
    "The agent asked for {asked}; an approval cannot give more than it asked for.",
    "Approve for {asked} or less. If it needs longer, extend the access once approved.",
)
EXTENSION_INVALID = Message(
    "An extension must be between 1 hour and 30 days.",
    "Choose an extension such as 1h, 8h, 1d or 7d.",
)
EXTEND_NOT_APPROVED = Message(
    "This access is {status}, not approved.",
    "Only approved access that has not expired can be extended; the agent can request access again.",
)
EXTEND_NO_EXPIRY = Message(
    "This access has no expiry.", "Nothing to extend: it lasts until someone revokes it."
)
EXTEND_OVER_LIMIT = Message(
    "Extending by {by} would leave more than {limit} of access.",
    "Choose a shorter extension: access can end at most {limit} from now.",
)
DENIAL_REASON_REQUIRED = Message(
    "A denial needs a reason.",
    "Tell the agent why (5 to 500 characters); it sees the reason and can ask again differently.",
)
AGENT_NOT_IN_ORG = Message(
    "The agent and the tool belong to different organizations.", "Pick a tool of the agent's organization."
)
ASSIGN_ALREADY_APPROVED = Message("The agent already has approved access to this tool.", "Nothing to do.")


def _announce_request(grant: AccessGrant, agent: Agent, tool: Tool, reason: str) -> None:
    """Tell the approvers (after commit, through the outbox) that a request waits in the inbox."""
    duration = grant.requested_duration
    notify(
        org_id=grant.org_id,
        event=Event.ACCESS_REQUESTED,
        subject={
            "agent": agent.name,
            "tool": tool.name,
            "reason": reason,
            "duration": format_duration(duration) if duration else "as long as allowed",
        },
        link=console_link("inbox", anchor=f"grant-{grant.id}"),
    )


def _announce_decision(grant: AccessGrant, event: Event, actor: HumanActor, **extra: str) -> None:
    notify(
        org_id=grant.org_id,
        event=event,
        subject={
            "agent": grant.agent.name,
            "tool": grant.tool.name,
            "decided_by": actor.audit_actor().label,
            **extra,
        },
        link=console_link("agent", agent_id=grant.agent_id),
    )


def _expiry_label(expires_at: datetime | None) -> str:
    return f"until {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "no expiry"


def _hint_for(status: str | None, tool_id: uuid.UUID) -> Message:
    return Message(NOT_APPROVED, NOT_APPROVED_HINTS[status].format(tool_id=tool_id))


def _check_expiry(expires_at: datetime | None, now: datetime) -> None:
    if expires_at is None:
        return
    if (
        not now + MIN_DURATION - timedelta(minutes=1)
        <= expires_at
        <= now + MAX_DURATION + timedelta(minutes=1)
    ):
        raise ValidationFailed(EXPIRY_INVALID, details=[FieldError("expires_at", EXPIRY_INVALID.error)])


def check_duration(duration: timedelta) -> timedelta:
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise ValidationFailed(EXPIRY_INVALID, details=[FieldError("duration", EXPIRY_INVALID.error)])
    return duration


def grant_duration_limit(org: Organization) -> timedelta:
    """The longest access a decision may give from now: the organization's maximum, at most 30 days."""
    return min(org.max_grant_duration or MAX_DURATION, MAX_DURATION)


def _check_org_limit(expires_at: datetime | None, now: datetime, org: Organization) -> None:
    """With a maximum set, no decision gives "no expiry" or ends later than ``now`` + maximum."""
    limit = org.max_grant_duration
    if limit is None:
        return
    if expires_at is None or expires_at > now + limit + EXPIRY_SLACK:
        msg = OVER_ORG_MAXIMUM.format(limit=human_duration(limit))
        raise ValidationFailed(msg, details=[FieldError("expires_at", msg.error)])


def _as_requested(grant: AccessGrant, org: Organization, now: datetime) -> datetime | None:
    """What "as requested" means: the agent's duration, shortened to the organization's maximum;
    with no duration asked, as long as allowed (no expiry, or the maximum when one is set)."""
    asked = grant.requested_duration
    limit = org.max_grant_duration
    if asked is None:
        return now + limit if limit is not None else None
    return now + (min(asked, limit) if limit is not None else asked)


def _detach_secret(grant: AccessGrant) -> Secret | None:
    """Unlink a per-agent credential; the caller deletes it after saving the grant,
    so credential material is gone as soon as it stops being needed."""
    secret = grant.secret if grant.secret_id is not None else None
    grant.secret = None
    return secret


def _save_dropping(grant: AccessGrant, old_secret: Secret | None) -> None:
    grant.save()
    if old_secret is not None:
        secret_delete(secret=old_secret)


# --- agent side ------------------------------------------------------------------------------------


def grant_request(*, agent: Agent, tool: Tool, reason: str, duration: timedelta | None = None) -> AccessGrant:
    """An agent asks for access. Reopens a denied, revoked or expired grant; 409 if pending or approved."""
    if tool.org_id != agent.org_id:
        raise NotFound(TOOL_NOT_FOUND)
    if duration is not None:
        check_duration(duration)
    now = timezone.now()
    with transaction.atomic():
        grant = AccessGrant.objects.select_for_update().filter(agent=agent, tool=tool).first()
        reopened_from = None
        if grant is None:
            try:
                with transaction.atomic():
                    grant = AccessGrant.objects.create(
                        org_id=agent.org_id,
                        agent=agent,
                        tool=tool,
                        reason=reason,
                        requested_duration=duration,
                        requested_at=now,
                    )
            except IntegrityError:
                # A concurrent request for the same pair won the insert.
                raise Conflict(ALREADY_PENDING) from None
        else:
            status = grant.effective_status(now)
            if status == GrantStatus.PENDING:
                raise Conflict(ALREADY_PENDING, request_id=str(grant.id))
            if status == GrantStatus.APPROVED:
                raise Conflict(ALREADY_APPROVED.format(tool_id=tool.id))
            reopened_from = status
            old_secret = _detach_secret(grant)
            grant.status = GrantStatus.PENDING
            grant.reason = reason
            grant.requested_duration = duration
            grant.denial_reason = ""
            grant.expires_at = None
            grant.decided_by = None
            grant.decided_by_label = ""
            grant.decided_at = None
            grant.requested_at = now
            _save_dropping(grant, old_secret)
        grant.agent, grant.tool = agent, tool
        metadata: dict[str, Any] = {"tool_id": str(tool.id), "tool_name": tool.name, "reason": reason}
        if duration is not None:
            metadata["duration_seconds"] = int(duration.total_seconds())
        if reopened_from:
            metadata["reopened_from"] = reopened_from
        audit_record(action=Action.GRANT_REQUESTED, actor=agent, target=grant, metadata=metadata)
        _announce_request(grant, agent, tool, reason)
        after_request(agent=agent, tool=tool, reopened=reopened_from is not None, now=now)
    return grant


USE_THE_PROXY = Message(
    "This tool is used through the AgentKey proxy: its credential is never handed out.",
    "Call the tool's API through {proxy_url}<path> (any method) with your AgentKey key as "
    "Authorization: Bearer; AgentKey adds the tool's credential and forwards the call.",
)
NOT_A_PROXY_TOOL = Message(
    "This tool is not set up for the proxy.",
    "Fetch its credential via GET /api/tools/{tool_id}/credentials and call the tool directly.",
)


@dataclass(frozen=True)
class Vended:
    tool: Tool
    credential: str | dict[str, Any]
    expires_at: datetime | None


def _approved_grant(*, agent: Agent, tool_id: uuid.UUID) -> AccessGrant:
    """One query for grant + tool + both possible secrets; 403 with a state hint unless approved now.

    Nothing is cached: a revoke or an expiry applies on the very next call.
    """
    # (agent, tool) is unique, so no ORDER BY: the one .first() adds costs more to compile
    # than the rest of this query (issue #7, docs/performance.md).
    rows = AccessGrant.objects.select_related("tool", "tool__secret", "secret").filter(
        agent_id=agent.id, tool_id=tool_id, tool__org_id=agent.org_id
    )[:1]
    grant = rows[0] if rows else None
    if grant is None:
        if not Tool.objects.filter(id=tool_id, org_id=agent.org_id).exists():
            raise NotFound(TOOL_NOT_FOUND)
        raise Forbidden(_hint_for(None, tool_id))
    status = grant.effective_status(timezone.now())
    if status != GrantStatus.APPROVED:
        raise Forbidden(_hint_for(status, tool_id))
    if grant.tool.is_canary:  # marked a decoy after it was approved: never vended, shown as revoked
        raise Forbidden(_hint_for(GrantStatus.REVOKED, tool_id))
    grant.agent = agent
    return grant


def _secret_of(grant: AccessGrant) -> Secret:
    tool = grant.tool
    secret = grant.secret if tool.credential_mode == CredentialMode.PER_AGENT else tool.secret
    if secret is None:
        raise Conflict(CREDENTIAL_NOT_CONFIGURED)
    return secret


def _audit_committed(*, action: Action, agent: Agent, tool: Tool, metadata: dict[str, Any]) -> None:
    """Write an audit row that is committed when this returns (fail closed: it raises otherwise)."""
    if connection.get_autocommit():
        # Autocommit: the INSERT is committed by the time it returns, in one round trip.
        audit_record(action=action, actor=agent, target=tool, metadata=metadata)
    else:
        # Inside a caller's transaction the row would commit later, or not at all:
        # durable=True refuses to run nested, so the guarantee cannot silently weaken.
        with transaction.atomic(durable=True):
            audit_record(action=action, actor=agent, target=tool, metadata=metadata)


def credential_vend(*, agent: Agent, tool_id: uuid.UUID) -> Vended:
    """The hot path (DESIGN §5): one query for grant + tool + ciphertext,
    decrypt, commit the ``credential.vended`` row, then return.

    A proxy-mode tool never hands its credential out: 403 with the proxy URL.
    """
    grant = _approved_grant(agent=agent, tool_id=tool_id)
    tool = grant.tool
    if tool.proxied:
        raise Forbidden(USE_THE_PROXY.format(proxy_url=tool.proxy_path), proxy_url=tool.proxy_path)
    plaintext = secret_reveal(secret=_secret_of(grant))
    metadata = {"tool_id": str(tool.id), "tool_name": tool.name, "grant_id": str(grant.id)}
    _audit_committed(action=Action.CREDENTIAL_VENDED, agent=agent, tool=tool, metadata=metadata)
    credential: str | dict[str, Any] = plaintext
    if tool.auth_type == AuthType.OAUTH_TOKEN:
        try:
            parsed = json.loads(plaintext)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            credential = parsed
    return Vended(tool=tool, credential=credential, expires_at=grant.expires_at)


@dataclass(frozen=True)
class ProxyAccess:
    """An approved grant of a proxy-mode tool and its decrypted credential (never in a repr)."""

    grant: AccessGrant
    tool: Tool
    credential: str = field(repr=False)


def credential_proxy_open(*, agent: Agent, tool_id: uuid.UUID) -> ProxyAccess:
    """The vend's checks for a proxied call (docs/proxy.md): approved now, the key and the
    agent already checked by authentication, then decrypt. Writes nothing: the call is
    audited by :func:`credential_proxied_record` once the upstream has answered."""
    grant = _approved_grant(agent=agent, tool_id=tool_id)
    tool = grant.tool
    if not tool.proxied:
        raise Forbidden(NOT_A_PROXY_TOOL.format(tool_id=tool.id))
    return ProxyAccess(grant=grant, tool=tool, credential=secret_reveal(secret=_secret_of(grant)))


def credential_proxied_record(
    *,
    agent: Agent,
    access: ProxyAccess,
    method: str,
    path: str,
    status: int | None,
    duration_ms: int,
    outcome: str = "forwarded",
) -> None:
    """Commit one ``credential.proxied`` row: method, path (no query), upstream status, duration.
    Never bodies, never headers. Raises when the row cannot be written (the caller fails closed)."""
    tool = access.tool
    metadata: dict[str, Any] = {
        "tool_id": str(tool.id),
        "tool_name": tool.name,
        "grant_id": str(access.grant.id),
        "method": method,
        "path": path[:500],
        "status": status,
        "duration_ms": duration_ms,
        "outcome": outcome,
    }
    _audit_committed(action=Action.CREDENTIAL_PROXIED, agent=agent, tool=tool, metadata=metadata)


def guide_suggest_as_agent(*, agent: Agent, tool: Tool, learned: str, why: str) -> GuideSuggested:
    """Only an agent that has (approved) access may propose guide improvements."""
    grant = AccessGrant.objects.filter(agent=agent, tool=tool).first()
    if grant is None or grant.effective_status() != GrantStatus.APPROVED:
        raise Forbidden(GUIDE_NEEDS_APPROVAL)
    return guide_suggest(agent=agent, tool=tool, learned=learned, why=why)


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
    refuse_canary(grant.tool)
    now = timezone.now()
    if not isinstance(expires_at, AsRequested):
        _check_expiry(expires_at, now)
    with transaction.atomic():
        locked = _lock_pending(grant)
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
        was = locked.effective_status(now)
        old_secret = _detach_secret(locked)
        locked.status = GrantStatus.REVOKED
        _decided(locked, actor, now)
        _save_dropping(locked, old_secret)
        audit_record(
            action=Action.GRANT_REVOKED,
            actor=actor,
            target=locked,
            metadata={"from": was, "tool_name": locked.tool.name, "reason": reason[:500]},
        )
        _announce_decision(locked, Event.ACCESS_REVOKED, actor, reason=reason[:500])
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


def _open_requests_for_backers(*, tool: Tool, backers: list[Backing]) -> list[AccessGrant]:
    """A pending request for each backer that has no grant for ``tool`` yet.

    A backer with any existing grant keeps it as it is: a denied or revoked
    grant is never reopened on the agent's behalf.
    """
    opened = []
    for backing in backers:
        agent = backing.agent
        if agent.status != AgentStatus.ACTIVE:
            continue
        grant, created = AccessGrant.objects.get_or_create(
            agent=agent,
            tool=tool,
            defaults={"org_id": tool.org_id, "reason": backing.reason, "requested_at": timezone.now()},
        )
        if not created:
            continue
        grant.agent, grant.tool = agent, tool
        audit_record(
            action=Action.GRANT_REQUESTED,
            actor=agent,
            target=grant,
            metadata={
                "tool_id": str(tool.id),
                "tool_name": tool.name,
                "reason": backing.reason,
                "via": "tool_suggestion",
            },
        )
        _announce_request(grant, agent, tool, backing.reason)
        opened.append(grant)
    return opened


def tool_add(
    *, org: Organization, actor: HumanActor, suggestion: ToolSuggestion | None = None, **fields: Any
) -> ToolCreated:
    """Create a tool; every backer of a suggestion it answers gets a pending request.

    Pending suggestions that match the tool's name or domain are answered
    automatically. ``suggestion`` (the one an admin started from) is answered
    too even if the tool was renamed so that it no longer matches; one decided
    meanwhile is left as it is and the tool is still created.
    """
    with transaction.atomic():
        created = tool_create(org=org, actor=actor, **fields)
        accepted, backers = list(created.accepted), list(created.backers)
        if suggestion is not None and suggestion.id not in {s.id for s in accepted}:
            try:
                more = suggestion_accept(suggestion=suggestion, tool=created.tool, actor=actor)
            except Conflict:
                more = None
            if more is not None:
                accepted.append(suggestion)
                known = {b.agent.id for b in backers}
                backers += [b for b in more if b.agent.id not in known]
        _open_requests_for_backers(tool=created.tool, backers=backers)
    return ToolCreated(tool=created.tool, accepted=accepted, backers=backers)


def tool_suggestion_accept_into(
    *, suggestion: ToolSuggestion, tool: Tool, actor: HumanActor
) -> list[AccessGrant]:
    """Answer a suggestion with a tool the catalog already has (say, under another name)."""
    with transaction.atomic():
        backers = suggestion_accept(suggestion=suggestion, tool=tool, actor=actor)
        return _open_requests_for_backers(tool=tool, backers=backers)
