"""Access reviews: approved access older than the organization's review age enters a queue;
a decider recertifies it (or revokes it); unreviewed past the grace period, it is revoked.

``certified_at`` is when the access was last approved or recertified (``decided_at`` stands
in for grants approved before reviews existed); ``review_requested_at`` marks an open review.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Organization
from accounts.permissions import Capability, HumanActor, require
from agentkey.core.durations import human_duration
from agentkey.core.errors import Conflict, Message
from agentkey.core.links import console_link
from audit.models import Action
from audit.services import SystemActor, audit_record
from grants import quorum
from grants.models import AccessGrant, GrantStatus
from grants.services import end_access, grant_revoke
from notifications.models import Event
from notifications.services import notify

REVIEW_JOB = SystemActor(label="access review")
#: The reason recorded when a decider revokes from the review queue.
NOT_RECERTIFIED = "not recertified"
#: How many "agent → tool" labels the review-due notification lists.
SUMMARY_LABELS = 5

NOT_UNDER_REVIEW = Message(
    "This access is not waiting for a review.",
    "Refresh: someone else already recertified or revoked it. Nothing to do.",
)
REVIEW_NOT_APPROVED = Message(
    "This access is {status}, not approved.",
    "Only approved access can be recertified; the agent can request access again.",
)


@dataclass(frozen=True)
class ReviewRun:
    requested: int
    expired: int


def review_queue(org_id: uuid.UUID) -> QuerySet[AccessGrant]:
    """Approved access with an open review, oldest review first (``grants_review_queue_idx``)."""
    return (
        AccessGrant.objects.filter(
            org_id=org_id, status=GrantStatus.APPROVED, review_requested_at__isnull=False
        )
        .select_related("agent", "tool", "org")
        .order_by("review_requested_at", "id")
    )


def _unexpired(now: datetime) -> Q:
    # Access past its expiry is the expiry job's; a review would only add noise.
    return Q(expires_at__isnull=True) | Q(expires_at__gt=now)


def _expire_overdue(org: Organization, now: datetime, batch_size: int) -> int:
    cutoff = now - org.access_review_grace
    expired = 0
    while True:
        with transaction.atomic():
            overdue = list(
                AccessGrant.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("agent", "tool", "secret")
                .filter(
                    _unexpired(now), org=org, status=GrantStatus.APPROVED, review_requested_at__lte=cutoff
                )
                .order_by("review_requested_at", "id")[:batch_size]
            )
            for grant in overdue:
                opened = grant.review_requested_at
                end_access(grant, decided_by=None, label=REVIEW_JOB.label, now=now)
                audit_record(
                    action=Action.GRANT_REVIEW_EXPIRED,
                    actor=REVIEW_JOB,
                    target=grant,
                    metadata={
                        "tool_name": grant.tool.name,
                        "review_requested_at": opened.isoformat() if opened else None,
                        "grace_seconds": int(org.access_review_grace.total_seconds()),
                        "reason": NOT_RECERTIFIED,
                    },
                )
                notify(
                    org_id=org.id,
                    event=Event.ACCESS_REVIEW_EXPIRED,
                    subject={
                        "agent": grant.agent.name,
                        "tool": grant.tool.name,
                        "reason": f"nobody recertified it within {human_duration(org.access_review_grace)}",
                    },
                    link=console_link("agent", agent_id=grant.agent_id),
                )
        # Revoked rows leave the filter, so the next batch starts after them.
        expired += len(overdue)
        if len(overdue) < batch_size:
            return expired


def _open_reviews(
    org: Organization, now: datetime, cutoff: datetime, batch_size: int
) -> Sequence[AccessGrant]:
    """Open a review on up to ``batch_size`` rows certified before ``cutoff``, in the caller's
    transaction."""
    due = list(
        AccessGrant.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("agent", "tool")
        .annotate(last_certified=Coalesce("certified_at", "decided_at"))
        .filter(
            _unexpired(now),
            org=org,
            status=GrantStatus.APPROVED,
            review_requested_at__isnull=True,
            last_certified__lt=cutoff,
        )
        .order_by("last_certified", "id")[:batch_size]
    )
    for grant in due:
        grant.review_requested_at = now
        grant.save(update_fields=["review_requested_at", "updated_at"])
        audit_record(
            action=Action.GRANT_REVIEW_REQUESTED,
            actor=REVIEW_JOB,
            target=grant,
            metadata={
                "tool_name": grant.tool.name,
                "certified_at": grant.last_certified.isoformat() if grant.last_certified else None,
                "deadline": (now + org.access_review_grace).isoformat(),
            },
        )
    return due


def _notify_due(org: Organization, now: datetime, count: int, labels: list[str]) -> None:
    if count > len(labels):
        labels = [*labels, f"and {count - len(labels)} more"]
    notify(
        org_id=org.id,
        event=Event.ACCESS_REVIEW_DUE,
        subject={
            "count": str(count),
            "grants": "; ".join(labels),
            "deadline": f"{now + org.access_review_grace:%Y-%m-%d %H:%M} UTC",
        },
        link=console_link("reviews"),
    )


def _request_due(org: Organization, now: datetime, batch_size: int) -> int:
    """Open reviews batch by batch, and one summary for the organization in the last batch's
    transaction (the outbox row commits with the reviews it announces)."""
    if org.access_review_after is None:
        return 0
    cutoff = now - org.access_review_after
    opened = 0
    labels: list[str] = []
    try:
        while True:
            with transaction.atomic():
                due = _open_reviews(org, now, cutoff, batch_size)
                summary = [*labels, *(f"{g.agent.name} → {g.tool.name}" for g in due[:SUMMARY_LABELS])]
                last = len(due) < batch_size
                if last and opened + len(due):
                    _notify_due(org, now, opened + len(due), summary[:SUMMARY_LABELS])
            opened, labels = opened + len(due), summary[:SUMMARY_LABELS]
            if last:
                return opened
    except Exception:
        if opened:
            # The batches before the failure are committed: those reviews are open, their
            # deadline runs and no later run announces them again, so announce them now.
            with transaction.atomic():
                _notify_due(org, now, opened, labels)
        raise


def grants_review_due(*, now: datetime | None = None, batch_size: int = 200) -> ReviewRun:
    """The review job: revoke access whose review outlived the grace period, then open reviews
    for access older than the review age (one notification per organization and run).

    Organizations with reviews switched off are skipped: reviews open there stay in the
    queue, and do not expire, until reviews are switched on again or someone decides them.
    Each batch of ``batch_size`` rows is its own transaction, so a large organization never
    holds more row locks than that; a failure keeps the batches already committed. Locked
    rows (a concurrent decision) are skipped and picked up on the next run.
    """
    now = now or timezone.now()
    requested = expired = 0
    for org in Organization.objects.filter(access_review_after__isnull=False).order_by("id"):
        expired += _expire_overdue(org, now, batch_size)
        requested += _request_due(org, now, batch_size)
    return ReviewRun(requested=requested, expired=expired)


def grant_recertify(*, grant: AccessGrant, reviewer: HumanActor) -> AccessGrant:
    """Keep access under review: it is certified now and leaves the queue.

    The row is locked and re-checked, so a recertification and a revoke (or the review
    job) never both win.
    """
    require(reviewer, Capability.DECIDE_GRANTS, grant.org_id)
    now = timezone.now()
    with transaction.atomic():
        locked = (
            AccessGrant.objects.select_for_update(of=("self",))
            .select_related("agent", "tool")
            .get(pk=grant.pk)
        )
        status = locked.effective_status(now)
        if status != GrantStatus.APPROVED:
            raise Conflict(REVIEW_NOT_APPROVED.format(status=status))
        opened = locked.review_requested_at
        if opened is None:
            raise Conflict(NOT_UNDER_REVIEW)
        # Keeping access is a decision like approving it: separation of duties applies.
        quorum.check_separation(grant=locked, approver=quorum.Approver.of(reviewer))
        locked.certified_at = now
        locked.review_requested_at = None
        locked.save(update_fields=["certified_at", "review_requested_at", "updated_at"])
        audit_record(
            action=Action.GRANT_RECERTIFIED,
            actor=reviewer,
            target=locked,
            metadata={"tool_name": locked.tool.name, "review_requested_at": opened.isoformat()},
        )
    return locked


def grant_review_revoke(*, grant: AccessGrant, reviewer: HumanActor) -> AccessGrant:
    """Revoke access from the review queue: the usual revoke, with the reason "not recertified".

    The review must still be open (row locked): a stale queue page cannot revoke access that
    someone has just recertified.
    """
    require(reviewer, Capability.DECIDE_GRANTS, grant.org_id)
    with transaction.atomic():
        locked = AccessGrant.objects.select_for_update(of=("self",)).get(pk=grant.pk)
        if locked.review_requested_at is None:
            raise Conflict(NOT_UNDER_REVIEW)
        return grant_revoke(grant=locked, actor=reviewer, reason=NOT_RECERTIFIED)


def review_deadline(grant: AccessGrant) -> datetime | None:
    if grant.review_requested_at is None:
        return None
    return grant.review_requested_at + grant.org.access_review_grace
