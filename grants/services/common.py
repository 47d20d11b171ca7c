"""What the grant services share: messages, announcements, duration rules, secret hand-over."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from accounts.models import GRANT_DURATION_MAX, GRANT_DURATION_MIN, Agent, Organization, User
from accounts.permissions import HumanActor, acting_user
from agentkey.core.durations import format_duration, human_duration
from agentkey.core.errors import FieldError, Message, ValidationFailed
from agentkey.core.links import console_link
from audit.models import Action
from audit.services import audit_record
from catalog.models import Tool
from grants.models import AccessGrant, GrantStatus
from notifications.models import Event
from notifications.services import notify
from vault.models import Secret
from vault.services import secret_delete

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


def revoke_locked(grant: AccessGrant, *, actor: HumanActor, reason: str, now: datetime) -> None:
    """A person's revoke of a locked grant: access ended, ``grant.revoked`` audited (from which
    state, the tool, the reason) and ``access.revoked`` announced. The grant's tool and agent
    are loaded."""
    was = grant.effective_status(now)
    end_access(grant, decided_by=acting_user(actor), label=actor.audit_actor().label, now=now)
    audit_record(
        action=Action.GRANT_REVOKED,
        actor=actor,
        target=grant,
        metadata={"from": was, "tool_name": grant.tool.name, "reason": reason[:500]},
    )
    _announce_decision(grant, Event.ACCESS_REVOKED, actor, reason=reason[:500])


def end_access(grant: AccessGrant, *, decided_by: User | None, label: str, now: datetime) -> None:
    """Revoke approved access on a locked row: who decided, no open review any more, and the
    per-agent credential deleted. The caller writes the audit event."""
    old_secret = _detach_secret(grant)
    grant.status = GrantStatus.REVOKED
    grant.review_requested_at = None
    grant.decided_by, grant.decided_by_label, grant.decided_at = decided_by, label, now
    _save_dropping(grant, old_secret)
