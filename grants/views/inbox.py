"""The inbox: every decision waiting for a human, in one list.

Access requests (decided in ``grants.views.decisions``), tool suggestions with
their aggregated demand, and usage-guide suggestions. Every form works as a
plain POST that redirects back here with a message; with htmx the decided
item is replaced in place and the nav count refreshes by an out-of-band swap.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from django.contrib import messages
from django.db.models import Count, Prefetch, QuerySet, prefetch_related_objects
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.console import back, can, console_view, membership_required, report
from accounts.models import Membership
from accounts.permissions import Capability
from agentkey.core.durations import human_duration
from agentkey.core.errors import Conflict, CryptoError, DomainError
from catalog.models import (
    CredentialMode,
    GuideSuggestion,
    GuideSuggestionBacker,
    SuggestionBacker,
    SuggestionStatus,
    ToolSuggestion,
)
from catalog.selectors import guide_suggestions_for_org, pending_suggestions_for_org, tool_suggestions_for_org
from catalog.services import guide_suggestion_accept, guide_suggestion_dismiss, tool_suggestion_dismiss
from grants.models import AccessGrant, GrantApproval
from grants.quorum import cycle_approvals, excluded_user_ids
from grants.selectors import pending_grants_for_org, time_bound_grants_for_org
from grants.services import grant_duration_limit

# Enough for a morning's backlog on one page; the oldest requests come first.
PAGE_LIMIT = 200

# The durations a human can choose on approval (DESIGN §6); the service bounds them to 1 h .. 30 d.
DURATIONS: dict[str, tuple[timedelta, str]] = {
    "1h": (timedelta(hours=1), "1 h"),
    "8h": (timedelta(hours=8), "8 h"),
    "1d": (timedelta(days=1), "1 d"),
    "7d": (timedelta(days=7), "7 d"),
    "30d": (timedelta(days=30), "30 d"),
}
DURATION_CHOICES = [(key, label) for key, (_, label) in DURATIONS.items()]
DEFAULT_DURATION = "8h"
CREDENTIAL_STORE_REFUSED = "The credential store refused this (master key problem). Tell your operator."
AS_REQUESTED = "requested"
NO_EXPIRY = "none"


def time_left(expires_at: datetime, now: datetime) -> str:
    """The countdown as the server renders it; static/js/countdown.js keeps the same format."""
    seconds = int((expires_at - now).total_seconds())
    if seconds <= 0:
        return "expired"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return "under a minute"


def durations_up_to(limit: timedelta | None) -> list[tuple[str, str]]:
    """The console's duration choices no longer than ``limit`` (all of them for None)."""
    return [
        (key, label) for key, (duration, label) in DURATIONS.items() if limit is None or duration <= limit
    ]


# --- what the page shows ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingRequest:
    """A request and the durations it may be approved for: never longer than the agent asked
    (approvers choose or shorten), never longer than the organization's maximum (``limit``)."""

    grant: AccessGrant
    limit: timedelta | None = None
    #: The person looking at the inbox: whether they may approve (quorum, separation of duties).
    viewer_id: int | None = None

    @property
    def per_agent(self) -> bool:
        return self.grant.tool.credential_mode == CredentialMode.PER_AGENT

    # N-of-M approvals (grants.quorum): the service is the real check; the page only explains.

    @property
    def required(self) -> int:
        return self.grant.tool.required_approvals

    @property
    def approvals(self) -> list[GrantApproval]:
        """This request cycle's approvals (prefetched by ``pending_requests``)."""
        if self.required == 1:
            return []  # a pending one-approver request has none: its approval would have decided it
        every = getattr(self.grant, "approval_list", None)
        if every is None:
            return cycle_approvals(self.grant)
        return [a for a in every if a.cycle == self.grant.requested_at]

    @property
    def quorum_status(self) -> str:
        """The count, such as "1 of 2 approvals — approved by X" (empty for a one-approver tool)."""
        if self.required == 1:
            return ""
        approvals = self.approvals
        text = f"{len(approvals)} of {self.required} approvals"
        if approvals:
            text += " — approved by " + ", ".join(a.approver_label for a in approvals)
        return text

    @property
    def completes_quorum(self) -> bool:
        """Whether an approval now would be the last one (it then carries a per-agent credential)."""
        return len(self.approvals) + 1 >= self.required

    @property
    def cannot_approve(self) -> str:
        """Why the viewer may not approve (empty when they may)."""
        if self.viewer_id is None:
            return ""
        if any(a.approver_id == self.viewer_id for a in self.approvals):
            return "You approved this request; it needs another person's approval."
        why = excluded_user_ids(self.grant).get(self.viewer_id)
        if why is not None:
            return f"Separation of duties: as {why} you may not approve this; another approver must."
        return ""

    @property
    def asked_for(self) -> str:
        duration = self.grant.requested_duration
        return human_duration(duration) if duration else ""

    @property
    def as_requested_label(self) -> str:
        """The "as requested" choice, saying when the maximum shortens it."""
        asked, limit = self.grant.requested_duration, self.limit
        if asked is None:
            return ""
        if limit is not None and limit < asked:
            return f"{human_duration(limit)}, the maximum (asked for {human_duration(asked)})"
        return f"As requested ({human_duration(asked)})"

    @property
    def choices(self) -> list[tuple[str, str]]:
        bounds = [d for d in (self.grant.requested_duration, self.limit) if d is not None]
        return durations_up_to(min(bounds) if bounds else None)

    @property
    def offers_no_expiry(self) -> bool:
        return self.grant.requested_duration is None and self.limit is None

    @property
    def default_duration(self) -> str:
        if self.grant.requested_duration:
            return AS_REQUESTED
        keys = [key for key, _ in durations_up_to(self.limit)]
        return DEFAULT_DURATION if DEFAULT_DURATION in keys else keys[-1]


@dataclass(frozen=True)
class TimeBound:
    """Approved access that ends on its own, with the extensions the maximum still allows."""

    grant: AccessGrant
    now: datetime
    limit: timedelta

    @property
    def expires_at(self) -> datetime:
        # The selector lists only grants with an expiry.
        return cast(datetime, self.grant.expires_at)

    @property
    def time_left(self) -> str:
        return time_left(self.expires_at, self.now)

    @property
    def extensions(self) -> list[tuple[str, str]]:
        room = self.now + self.limit - self.expires_at
        return durations_up_to(room) if room >= DURATIONS["1h"][0] else []


@dataclass(frozen=True)
class WantedTool:
    """A tool suggestion with its backers, oldest first."""

    suggestion: ToolSuggestion
    backers: list[SuggestionBacker]

    @property
    def headline(self) -> str:
        name = self.suggestion.name
        if not self.backers:
            return f"Agents want {name}"
        first, others = self.backers[0].agent.name, len(self.backers) - 1
        if others == 0:
            return f"{first} wants {name}"
        return f"{first} + {others} other{'s' if others > 1 else ''} want {name}"


@dataclass(frozen=True)
class GuideProposal:
    suggestion: GuideSuggestion
    backers: list[GuideSuggestionBacker]

    @property
    def outdated(self) -> bool:
        return self.suggestion.base_version != self.suggestion.tool.current_guide_version


def _pending_guide_suggestions(org_id: uuid.UUID) -> QuerySet[GuideSuggestion]:
    return guide_suggestions_for_org(org_id).filter(status=SuggestionStatus.PENDING)


def pending_requests(
    org_id: uuid.UUID, limit: timedelta | None = None, viewer_id: int | None = None
) -> list[PendingRequest]:
    grants = list(pending_grants_for_org(org_id).order_by("requested_at", "id")[:PAGE_LIMIT])
    # One more query, and only when some request needs several approvers (N-of-M).
    prefetch_related_objects(
        [g for g in grants if g.tool.required_approvals > 1],
        Prefetch(
            "approvals", queryset=GrantApproval.objects.order_by("created_at", "id"), to_attr="approval_list"
        ),
    )
    return [PendingRequest(grant, limit, viewer_id) for grant in grants]


def time_bound(membership: Membership) -> list[TimeBound]:
    """Approved, unexpired access with an expiry in the organization, soonest end first."""
    now = timezone.now()
    limit = grant_duration_limit(membership.org)
    grants = time_bound_grants_for_org(membership.org_id, now)[:PAGE_LIMIT]
    return [TimeBound(grant, now, limit) for grant in grants]


def wanted_tools(suggestions: QuerySet[ToolSuggestion]) -> list[WantedTool]:
    """Most-backed first; two queries whatever the number of suggestions and backers."""
    rows = (
        suggestions.annotate(backer_count=Count("backers"))
        .order_by("-backer_count", "created_at", "id")
        .prefetch_related(
            Prefetch(
                "backers",
                queryset=SuggestionBacker.objects.select_related("agent").order_by("created_at", "id"),
                to_attr="backer_list",
            )
        )[:PAGE_LIMIT]
    )
    return [WantedTool(s, s.backer_list) for s in rows]


def guide_proposals(suggestions: QuerySet[GuideSuggestion]) -> list[GuideProposal]:
    rows = (
        suggestions.select_related("tool")
        .annotate(backer_count=Count("backers"))
        .order_by("-backer_count", "created_at", "id")
        .prefetch_related(
            Prefetch(
                "backers",
                queryset=GuideSuggestionBacker.objects.select_related("agent").order_by("created_at", "id"),
                to_attr="backer_list",
            )
        )[:PAGE_LIMIT]
    )
    return [GuideProposal(s, s.backer_list) for s in rows]


def inbox_count(membership: Membership) -> int:
    """What this person can act on: requests if they decide grants, suggestions if they manage tools."""
    org_id = membership.org_id
    total = 0
    if can(membership, Capability.DECIDE_GRANTS):
        total += pending_grants_for_org(org_id).count()
    if can(membership, Capability.MANAGE_TOOLS):
        total += pending_suggestions_for_org(org_id).count()
        total += _pending_guide_suggestions(org_id).count()
    return total


@console_view()
def inbox_view(request: HttpRequest) -> HttpResponse:
    membership = membership_required(request)
    org_id, limit = membership.org_id, membership.org.max_grant_duration
    return render(
        request,
        "console/inbox.html",
        {
            "section": "inbox",
            "requests": pending_requests(org_id, limit, membership.user_id),
            "time_bound": time_bound(membership),
            "wanted_tools": wanted_tools(pending_suggestions_for_org(org_id)),
            "guide_proposals": guide_proposals(_pending_guide_suggestions(org_id)),
            "durations": durations_up_to(limit),
            "max_grant_duration": human_duration(limit) if limit else "",
            "page_limit": PAGE_LIMIT,
        },
    )


@console_view()
def inbox_count_view(request: HttpRequest) -> HttpResponse:
    count = inbox_count(membership_required(request))
    return HttpResponse(str(count) if count else "", content_type="text/plain; charset=utf-8")


# --- answering a decision: a partial for htmx, a redirect with a message otherwise ----------------


def is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def settled(
    request: HttpRequest, *, dom_id: str, title: str, outcome: str, label: str, ok: bool = True
) -> HttpResponse:
    """The item is gone from the inbox: say what happened, in place or as a message.

    ``label`` names the outcome in a word (Approved, Denied, ...), so status is not colour alone.
    """
    if is_htmx(request):
        return render(
            request,
            "console/inbox/_settled.html",
            {
                "dom_id": dom_id,
                "title": title,
                "outcome": outcome,
                "ok": ok,
                "label": label,
                "inbox_count": inbox_count(membership_required(request)),
            },
        )
    (messages.success if ok else messages.error)(request, f"{title}: {outcome}")
    return back(request, "console:inbox")


def refused(
    request: HttpRequest,
    exc: DomainError | CryptoError,
    *,
    dom_id: str,
    title: str,
    item: Callable[[str], HttpResponse] | None = None,
) -> HttpResponse:
    """A refused decision. Decided elsewhere (a Conflict): the item leaves the inbox with the
    service's message. Anything else: ``item`` renders it again with the problem next to it."""
    if not is_htmx(request):
        report(request, exc)
        return back(request, "console:inbox")
    problem = f"{exc.error} {exc.hint}" if isinstance(exc, DomainError) else CREDENTIAL_STORE_REFUSED
    if isinstance(exc, Conflict) or item is None:
        return settled(request, dom_id=dom_id, title=title, outcome=problem, label="Not changed", ok=False)
    return item(problem)


# --- suggestion decisions (MANAGE_TOOLS; the services check the role again) -----------------------


def _reason(request: HttpRequest) -> str:
    return request.POST.get("reason", "")[:500]


@console_view(Capability.MANAGE_TOOLS)
@require_POST
def tool_suggestion_dismiss_view(request: HttpRequest, suggestion_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    suggestion = get_object_or_404(tool_suggestions_for_org(membership.org_id), id=suggestion_id)
    dom_id, title = f"tool-suggestion-{suggestion.id}", suggestion.name
    try:
        tool_suggestion_dismiss(suggestion=suggestion, actor=membership, reason=_reason(request))
    except DomainError as exc:
        return refused(request, exc, dom_id=dom_id, title=title)
    return settled(
        request,
        dom_id=dom_id,
        title=title,
        outcome="dismissed by you. Agents cannot suggest it again for 24 hours.",
        label="Dismissed",
    )


def _guide_item(request: HttpRequest, suggestion: GuideSuggestion, error: str) -> HttpResponse:
    [proposal] = guide_proposals(guide_suggestions_for_org(suggestion.org_id).filter(pk=suggestion.pk))
    return render(request, "console/inbox/_guide_suggestion.html", {"p": proposal, "error": error})


def appended(guide: str, learned: str) -> str:
    """The one-click acceptance: the learned text as a new bullet after the current guide."""
    guide = guide.rstrip()
    return f"{guide}\n\n- {learned}" if guide else f"- {learned}"


@console_view(Capability.MANAGE_TOOLS)
@require_POST
def guide_suggestion_accept_view(request: HttpRequest, suggestion_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    suggestion = get_object_or_404(
        guide_suggestions_for_org(membership.org_id).select_related("tool"), id=suggestion_id
    )
    tool = suggestion.tool
    dom_id, title = f"guide-suggestion-{suggestion.id}", f"Usage guide of {tool.name}"
    try:
        version = guide_suggestion_accept(
            suggestion=suggestion,
            actor=membership,
            content=appended(tool.usage_guide, suggestion.learned),
            expected_version=tool.current_guide_version,
        )
    except DomainError as exc:
        return refused(
            request,
            exc,
            dom_id=dom_id,
            title=title,
            item=lambda error: _guide_item(request, suggestion, error),
        )
    return settled(
        request,
        dom_id=dom_id,
        title=title,
        outcome=f"suggestion accepted by you as version {version.version}.",
        label="Accepted",
    )


@console_view(Capability.MANAGE_TOOLS)
@require_POST
def guide_suggestion_dismiss_view(request: HttpRequest, suggestion_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    suggestion = get_object_or_404(
        guide_suggestions_for_org(membership.org_id).select_related("tool"), id=suggestion_id
    )
    dom_id, title = f"guide-suggestion-{suggestion.id}", f"Usage guide of {suggestion.tool.name}"
    try:
        guide_suggestion_dismiss(suggestion=suggestion, actor=membership, reason=_reason(request))
    except DomainError as exc:
        return refused(request, exc, dom_id=dom_id, title=title)
    return settled(
        request, dom_id=dom_id, title=title, outcome="suggestion dismissed by you.", label="Dismissed"
    )


urlpatterns = [
    path("inbox/", inbox_view, name="inbox"),
    path("inbox/count", inbox_count_view, name="inbox_count"),
    path(
        "inbox/tool-suggestions/<uuid:suggestion_id>/dismiss",
        tool_suggestion_dismiss_view,
        name="inbox_tool_suggestion_dismiss",
    ),
    path(
        "inbox/guide-suggestions/<uuid:suggestion_id>/accept",
        guide_suggestion_accept_view,
        name="inbox_guide_accept",
    ),
    path(
        "inbox/guide-suggestions/<uuid:suggestion_id>/dismiss",
        guide_suggestion_dismiss_view,
        name="inbox_guide_dismiss",
    ),
]
