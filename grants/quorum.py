"""N-of-M approvals and separation of duties (docs/governance.md).

A tool requires ``required_approvals`` distinct approvers (1..5; the database refuses 0).
Each approval of a pending request is a ``GrantApproval`` row of the current request
cycle (the grant's ``requested_at``); ``grants.services.grant_approve`` records it under
the grant's row lock and approves the grant once the cycle has enough of them. A denial
ends the cycle, a new request starts a new one, and a cycle whose first approval is older
than the organization's ``quorum_window`` expires (``grants_expire_quorums``).

This module holds the rules; it imports nothing from ``grants.services`` (which calls it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import DateTimeField, Exists, ExpressionWrapper, OuterRef, Value
from django.utils import timezone

from accounts.models import User
from accounts.permissions import HumanActor, acting_user
from agentkey.core.durations import human_duration
from agentkey.core.errors import Conflict, Forbidden, Message
from agentkey.core.links import console_link
from audit.models import Action
from audit.services import SystemActor, audit_record
from grants.models import AccessGrant, GrantApproval, GrantStatus
from notifications.models import Event
from notifications.services import notify

ALREADY_APPROVED_BY_YOU = Message(
    "You already approved this request ({approvals} of {required} approvals).",
    "Approvals must come from {required} different people: ask another member who decides access "
    "requests to approve it.",
)
SEPARATION_OF_DUTIES = Message(
    "Separation of duties: {who} may not approve access to {tool}.",
    "Ask another member who decides access requests and neither created nor owns the agent "
    "and does not own the tool.",
)
CREDENTIAL_ON_LAST_APPROVAL = Message(
    "This approval is {approvals} of {required}: the credential is given with the last approval.",
    "Approve without a credential; whoever gives approval {required} of {required} provides this agent's "
    "credential. It is never stored before the quorum is complete.",
)
CREDENTIAL_COMPLETES_QUORUM = Message(
    "This tool uses a credential per agent, and this approval completes the quorum "
    "({required} of {required}).",
    "Provide the credential for this agent with this approval.",
)
EARLIER_CHOICE_PASSED = Message(
    "{approver} approved this request only until {until}, which has passed.",
    "Deny this request with a reason; the agent can then ask again and the approvals start over.",
)
QUORUM_NEEDS_REQUEST = Message(
    "{tool} needs {required} approvals from different people; it cannot be assigned directly.",
    "Ask the agent to request access (POST /api/tools/{tool_id}/request), then approve it in the inbox "
    "with {required} approvers.",
)

QUORUM_JOB = SystemActor(label="quorum expiry job")


@dataclass(frozen=True)
class Approver:
    """Who approves: a person (user id), or a shell operator without an account (by label)."""

    user: User | None
    label: str

    @classmethod
    def of(cls, actor: HumanActor) -> Approver:
        return cls(user=acting_user(actor), label=actor.audit_actor().label)

    def made(self, approval: GrantApproval) -> bool:
        if self.user is not None:
            return approval.approver_id == self.user.pk
        return approval.approver_id is None and approval.approver_label == self.label


def excluded_user_ids(grant: AccessGrant) -> dict[int, str]:
    """The people separation of duties keeps from approving ``grant`` (user id → why)."""
    tool, agent = grant.tool, grant.agent
    if not tool.separation_of_duties:
        return {}
    excluded: dict[int, str] = {}
    for user_id, why in (
        (tool.owner_id, "the tool's owner"),
        (agent.owner_id, "the agent's owner"),
        (agent.created_by_id, "the agent's creator"),
    ):
        if user_id is not None:
            excluded.setdefault(user_id, why)
    return excluded


def check_separation(*, grant: AccessGrant, approver: Approver) -> None:
    """Refuse an approver whom the tool's separation of duties excludes."""
    if approver.user is None:
        return
    why = excluded_user_ids(grant).get(approver.user.pk)
    if why is not None:
        raise Forbidden(SEPARATION_OF_DUTIES.format(who=f"{approver.label} ({why})", tool=grant.tool.name))


def cycle_approvals(grant: AccessGrant) -> list[GrantApproval]:
    """The approvals of the grant's current request cycle, oldest first."""
    return list(
        GrantApproval.objects.filter(grant=grant, cycle=grant.requested_at).order_by("created_at", "id")
    )


def check_not_already(*, grant: AccessGrant, approver: Approver, prior: list[GrantApproval]) -> None:
    if any(approver.made(approval) for approval in prior):
        raise Conflict(
            ALREADY_APPROVED_BY_YOU.format(approvals=len(prior), required=grant.tool.required_approvals)
        )


def quorum_expiry(approvals: list[GrantApproval]) -> datetime | None:
    """The earliest expiry the quorum chose; no expiry only if every approver chose none."""
    chosen = [a.expires_at for a in approvals if a.expires_at is not None]
    return min(chosen) if chosen else None


def check_choices_current(approvals: list[GrantApproval], now: datetime) -> None:
    """An approver's chosen end that has already passed cannot be turned into access."""
    for approval in approvals:
        if approval.expires_at is not None and approval.expires_at <= now:
            raise Conflict(
                EARLIER_CHOICE_PASSED.format(
                    approver=approval.approver_label, until=f"{approval.expires_at:%Y-%m-%d %H:%M} UTC"
                )
            )


def approval_record(
    *, grant: AccessGrant, approver: Approver, expires_at: datetime | None, now: datetime
) -> GrantApproval:
    """Store one approval of the current cycle (the caller holds the grant's row lock)."""
    return GrantApproval.objects.create(
        grant=grant,
        cycle=grant.requested_at,
        approver=approver.user,
        approver_label=approver.label[:200],
        expires_at=expires_at,
        created_at=now,
    )


def announce_partial(*, grant: AccessGrant, approver: Approver, approvals: int) -> None:
    notify(
        org_id=grant.org_id,
        event=Event.ACCESS_APPROVAL_RECORDED,
        subject={
            "agent": grant.agent.name,
            "tool": grant.tool.name,
            "decided_by": approver.label,
            "approvals": str(approvals),
            "required": str(grant.tool.required_approvals),
        },
        link=console_link("inbox", anchor=f"grant-{grant.id}"),
    )


# --- expiry of partial quorums ----------------------------------------------------------------------


def grants_expire_quorums(*, now: datetime | None = None, batch_size: int = 200) -> int:
    """Expire pending requests whose first approval of the cycle is older than the
    organization's quorum window. The agent sees ``expired`` and may request again
    (a new cycle, so the old approvals no longer count). Locked rows (a decision in
    progress) are skipped and picked up on the next run."""
    now = now or timezone.now()
    stale = GrantApproval.objects.filter(
        grant=OuterRef("pk"),
        cycle=OuterRef("requested_at"),
        created_at__lte=ExpressionWrapper(
            Value(now) - OuterRef("org__quorum_window"), output_field=DateTimeField()
        ),
    )
    expired = 0
    while True:
        with transaction.atomic():
            due = list(
                AccessGrant.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("agent", "tool", "org")
                .filter(Exists(stale), status=GrantStatus.PENDING)
                .order_by("requested_at")[:batch_size]
            )
            for grant in due:
                _expire_quorum(grant, now)
        expired += len(due)
        if len(due) < batch_size:
            return expired


def _expire_quorum(grant: AccessGrant, now: datetime) -> None:
    approvals = cycle_approvals(grant)
    required = grant.tool.required_approvals
    grant.status = GrantStatus.EXPIRED
    grant.save(update_fields=["status", "updated_at"])
    approvers = [a.approver_label for a in approvals]
    audit_record(
        action=Action.GRANT_QUORUM_EXPIRED,
        actor=QUORUM_JOB,
        target=grant,
        metadata={
            "tool_name": grant.tool.name,
            "approvals": len(approvals),
            "required": required,
            "approvers": approvers,
            "window_seconds": int(grant.org.quorum_window.total_seconds()),
        },
    )
    notify(
        org_id=grant.org_id,
        event=Event.ACCESS_QUORUM_EXPIRED,
        subject={
            "agent": grant.agent.name,
            "tool": grant.tool.name,
            "approvals": str(len(approvals)),
            "required": str(required),
            "approvers": ", ".join(approvers),
        },
        link=console_link("agent", agent_id=grant.agent_id),
    )


QUORUM_LAPSED = Message(
    "The approvals of this request expired: the quorum was not reached within {window} of the first one.",
    "The agent can request access again; the approvals then start over.",
)


def check_not_lapsed(*, grant: AccessGrant, prior: list[GrantApproval], now: datetime) -> None:
    """A partial quorum past the window counts as expired whether or not the job has run."""
    window = grant.org.quorum_window
    if prior and prior[0].created_at <= now - window:
        raise Conflict(QUORUM_LAPSED.format(window=human_duration(window)))
