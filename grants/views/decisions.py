"""Decisions on grants: approve and deny from the inbox (one at a time or in bulk), extend
time-bound access from the inbox, revoke from any page."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.console import back, console_view, membership_required, report
from accounts.permissions import Capability
from agentkey.core.durations import human_duration
from agentkey.core.errors import CryptoError, DomainError, FieldError, Message, ValidationFailed
from catalog.models import CredentialMode
from grants.models import AccessGrant, GrantStatus
from grants.selectors import grants_for_org
from grants.services import AS_REQUESTED as REQUESTED_DURATION
from grants.services import (
    AsRequested,
    grant_approve,
    grant_deny,
    grant_duration_limit,
    grant_extend,
    grant_revoke,
)
from grants.views.inbox import (
    AS_REQUESTED,
    DURATIONS,
    NO_EXPIRY,
    PendingRequest,
    TimeBound,
    is_htmx,
    refused,
    settled,
)

# One bulk POST decides at most this many requests (each is its own transaction and audit event).
BULK_LIMIT = 200

DURATION_UNKNOWN = Message(
    "Choose how long the access lasts.",
    "Pick 1 h, 8 h, 1 d, 7 d, 30 d, as requested (when the agent asked for a duration) or no expiry.",
)
NOTHING_SELECTED = "Select the requests to approve first."
EXTENSION_UNKNOWN = Message(
    "Choose how long to extend the access by.",
    "Pick one of the offered durations (1 h, 8 h, 1 d, 7 d, 30 d) that fits the organization's maximum.",
)


def _title(grant: AccessGrant) -> str:
    return f"{grant.agent.name} → {grant.tool.name}"


def _expiry(choice: str, grant: AccessGrant, now: datetime) -> tuple[datetime | AsRequested | None, str]:
    """The ``expires_at`` for ``grant_approve`` and how to say it ("for 8 h")."""
    if choice in DURATIONS:
        duration, label = DURATIONS[choice]
        return now + duration, f"for {label}"
    asked, limit = grant.requested_duration, grant.org.max_grant_duration
    if choice == AS_REQUESTED and asked is not None:
        if limit is not None and limit < asked:
            return (
                REQUESTED_DURATION,
                f"for {human_duration(limit)} (the maximum; asked for {human_duration(asked)})",
            )
        return REQUESTED_DURATION, f"for {human_duration(asked)} (as requested)"
    if choice == NO_EXPIRY:
        return None, "with no expiry"
    raise ValidationFailed(DURATION_UNKNOWN, details=[FieldError("duration", DURATION_UNKNOWN.error)])


def _grant_item(request: HttpRequest, grant: AccessGrant, error: str) -> HttpResponse:
    membership = membership_required(request)
    item = PendingRequest(grant, membership.org.max_grant_duration, membership.user_id)
    return render(request, "console/inbox/_grant.html", {"r": item, "error": error})


def _grant_lookup(request: HttpRequest, grant_id: uuid.UUID) -> AccessGrant:
    membership = membership_required(request)
    return get_object_or_404(
        grants_for_org(membership.org_id).select_related("agent", "tool", "org"), id=grant_id
    )


@sensitive_post_parameters("credential")
@console_view(Capability.DECIDE_GRANTS)
@require_POST
def grant_approve_view(request: HttpRequest, grant_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    grant = _grant_lookup(request, grant_id)
    try:
        expires_at, span = _expiry(request.POST.get("duration", ""), grant, timezone.now())
        decided = grant_approve(
            grant=grant,
            reviewer=membership,
            expires_at=expires_at,
            credential=request.POST.get("credential") or None,
        )
    except (DomainError, CryptoError) as exc:
        return refused(
            request,
            exc,
            dom_id=f"grant-{grant.id}",
            title=_title(grant),
            item=lambda error: _grant_item(request, grant, error),
        )
    if decided.status == GrantStatus.PENDING:
        return settled(
            request,
            dom_id=f"grant-{grant.id}",
            title=_title(grant),
            outcome=_recorded(decided, span),
            label="Approval recorded",
        )
    return settled(
        request,
        dom_id=f"grant-{grant.id}",
        title=_title(grant),
        outcome=f"approved {span} by you.",
        label="Approved",
    )


def _recorded(grant: AccessGrant, span: str) -> str:
    """What a partial approval did: the count, and who may still approve."""
    item = PendingRequest(grant)
    count, required = len(item.approvals), item.required
    missing = required - count
    return (
        f"your approval ({span}) is recorded: {count} of {required} approvals. "
        f"Access opens after {missing} more approval{'s' if missing > 1 else ''} by other people."
    )


@console_view(Capability.DECIDE_GRANTS)
@require_POST
def grant_deny_view(request: HttpRequest, grant_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    grant = _grant_lookup(request, grant_id)
    try:
        grant_deny(grant=grant, reviewer=membership, reason=request.POST.get("reason", "")[:2000])
    except DomainError as exc:
        return refused(
            request,
            exc,
            dom_id=f"grant-{grant.id}",
            title=_title(grant),
            item=lambda error: _grant_item(request, grant, error),
        )
    return settled(
        request,
        dom_id=f"grant-{grant.id}",
        title=_title(grant),
        outcome="denied by you. The agent sees your reason.",
        label="Denied",
    )


def _uuids(values: list[str]) -> list[uuid.UUID]:
    ids = []
    for value in values:
        try:
            ids.append(uuid.UUID(value))
        except ValueError:
            continue
    return list(dict.fromkeys(ids))


@console_view(Capability.DECIDE_GRANTS)
@require_POST
def grant_approve_bulk_view(request: HttpRequest) -> HttpResponse:
    """Approve the selected requests for one duration, each through ``grant_approve``.

    Per-agent tools are skipped: each of those approvals needs its own credential.
    """
    membership = membership_required(request)
    ids = _uuids(request.POST.getlist("grant"))[:BULK_LIMIT]
    choice = request.POST.get("duration", "")
    if not ids:
        messages.warning(request, NOTHING_SELECTED)
    elif choice not in DURATIONS and choice != AS_REQUESTED:
        report(request, ValidationFailed(DURATION_UNKNOWN))
    else:
        grants = list(
            grants_for_org(membership.org_id)
            .filter(id__in=ids)
            .select_related("agent", "tool")
            .order_by("requested_at", "id")
        )
        approved: list[str] = []
        recorded: list[str] = []
        skipped: list[str] = []
        problems: list[str] = []
        for grant in grants:
            if grant.tool.credential_mode == CredentialMode.PER_AGENT:
                skipped.append(_title(grant))
                continue
            expires_at: datetime | AsRequested = REQUESTED_DURATION
            if choice in DURATIONS:
                # Approvers choose or shorten: never longer than an agent asked for.
                asked = grant.requested_duration
                chosen = DURATIONS[choice][0]
                expires_at = timezone.now() + (min(chosen, asked) if asked is not None else chosen)
            try:
                decided = grant_approve(grant=grant, reviewer=membership, expires_at=expires_at)
            except DomainError as exc:
                problems.append(f"{_title(grant)}: {exc.error}")
            else:
                (recorded if decided.status == GrantStatus.PENDING else approved).append(_title(grant))
        _bulk_messages(request, choice, approved, skipped, problems, missing=len(ids) - len(grants))
        if recorded:
            messages.info(
                request,
                f"Your approval is recorded for {len(recorded)} request{'s' if len(recorded) > 1 else ''} "
                f"that need{'' if len(recorded) > 1 else 's'} more approvers: {', '.join(recorded)}.",
            )
    if is_htmx(request):
        return HttpResponseClientRedirect(back(request, "console:inbox").url)
    return back(request, "console:inbox")


def _bulk_messages(
    request: HttpRequest,
    choice: str,
    approved: list[str],
    skipped: list[str],
    problems: list[str],
    *,
    missing: int,
) -> None:
    if approved:
        span = (
            f"for {DURATIONS[choice][1]} (or less where an agent asked for less)"
            if choice in DURATIONS
            else "as each agent asked (else as long as allowed)"
        )
        n = len(approved)
        messages.success(
            request, f"Approved {n} request{'s' if n > 1 else ''} {span}: {', '.join(approved)}."
        )
    if skipped:
        messages.warning(
            request,
            f"Skipped {len(skipped)} request{'s' if len(skipped) > 1 else ''} for per-agent tools, "
            f"which each need their own credential; approve them one by one: {', '.join(skipped)}.",
        )
    if problems:
        messages.error(request, "Not approved: " + "; ".join(problems))
    if missing:
        messages.error(request, f"{missing} selected request{'s were' if missing > 1 else ' was'} not found.")


@console_view(Capability.DECIDE_GRANTS)
@require_POST
def grant_revoke_view(request: HttpRequest, grant_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    grant = get_object_or_404(grants_for_org(membership.org_id).select_related("agent", "tool"), id=grant_id)
    try:
        grant_revoke(grant=grant, actor=membership, reason=request.POST.get("reason", "")[:500])
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(request, f"{grant.agent.name} no longer has access to {grant.tool.name}.")
    return back(request, "console:inbox")


def _time_bound_item(
    request: HttpRequest, grant: AccessGrant, *, error: str = "", note: str = ""
) -> HttpResponse:
    membership = membership_required(request)
    item = TimeBound(grant, timezone.now(), grant_duration_limit(membership.org))
    return render(request, "console/inbox/_time_bound.html", {"a": item, "error": error, "note": note})


@console_view(Capability.DECIDE_GRANTS)
@require_POST
def grant_extend_view(request: HttpRequest, grant_id: uuid.UUID) -> HttpResponse:
    """Extend approved, time-bound access by one of the console's durations (within the maximum)."""
    membership = membership_required(request)
    grant = _grant_lookup(request, grant_id)
    dom_id, title = f"time-bound-{grant.id}", _title(grant)
    choice = request.POST.get("by", "")
    try:
        if choice not in DURATIONS:
            raise ValidationFailed(EXTENSION_UNKNOWN, details=[FieldError("by", EXTENSION_UNKNOWN.error)])
        extended = grant_extend(grant=grant, actor=membership, by=DURATIONS[choice][0])
    except DomainError as exc:
        return refused(
            request,
            exc,
            dom_id=dom_id,
            title=title,
            item=lambda error: _time_bound_item(request, grant, error=error),
        )
    ends = extended.expires_at
    until = f", until {ends:%Y-%m-%d %H:%M} UTC" if ends else ""
    outcome = f"extended by {DURATIONS[choice][1]} by you{until}."
    if is_htmx(request):
        return _time_bound_item(request, extended, note=f"Extended by {DURATIONS[choice][1]}.")
    messages.success(request, f"{title}: {outcome}")
    return back(request, "console:inbox")


urlpatterns = [
    path("grants/<uuid:grant_id>/approve", grant_approve_view, name="grant_approve"),
    path("grants/<uuid:grant_id>/deny", grant_deny_view, name="grant_deny"),
    path("grants/approve", grant_approve_bulk_view, name="grant_approve_bulk"),
    path("grants/<uuid:grant_id>/revoke", grant_revoke_view, name="grant_revoke"),
    path("grants/<uuid:grant_id>/extend", grant_extend_view, name="grant_extend"),
]
