"""The access-review queue: approved access due for recertification, with its deadline.

Deciders (owners, admins, approvers) recertify or revoke; auditors read. Plain POST forms,
so everything works without JavaScript.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.console import back, console_view, membership_required, report
from accounts.permissions import Capability
from agentkey.core.durations import human_duration
from agentkey.core.errors import DomainError
from grants.models import AccessGrant
from grants.reviews import grant_recertify, grant_review_revoke, review_deadline, review_queue
from grants.selectors import grants_for_org

QUEUE_ROWS = 500


@dataclass(frozen=True)
class ReviewRow:
    grant: AccessGrant
    certified_at: datetime | None
    deadline: datetime | None
    overdue: bool


@console_view()
def reviews_view(request: HttpRequest) -> HttpResponse:
    org = membership_required(request).org
    now = timezone.now()
    rows = []
    for grant in review_queue(org.id)[:QUEUE_ROWS]:
        deadline = review_deadline(grant)
        rows.append(
            ReviewRow(
                grant=grant,
                certified_at=grant.certified_at or grant.decided_at,
                deadline=deadline,
                overdue=deadline is not None and deadline <= now,
            )
        )
    return render(
        request,
        "console/reviews.html",
        {
            "section": "reviews",
            "rows": rows,
            "review_after": human_duration(org.access_review_after) if org.access_review_after else "",
            "review_grace": human_duration(org.access_review_grace),
        },
    )


def _grant(request: HttpRequest, grant_id: uuid.UUID) -> AccessGrant:
    org_id = membership_required(request).org_id
    return get_object_or_404(grants_for_org(org_id).select_related("agent", "tool"), id=grant_id)


@console_view(Capability.DECIDE_GRANTS)
@require_POST
def review_recertify_view(request: HttpRequest, grant_id: uuid.UUID) -> HttpResponse:
    grant = _grant(request, grant_id)
    try:
        grant_recertify(grant=grant, reviewer=membership_required(request))
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(request, f"{grant.agent.name} keeps its access to {grant.tool.name}.")
    return back(request, "console:reviews")


@console_view(Capability.DECIDE_GRANTS)
@require_POST
def review_revoke_view(request: HttpRequest, grant_id: uuid.UUID) -> HttpResponse:
    grant = _grant(request, grant_id)
    try:
        grant_review_revoke(grant=grant, reviewer=membership_required(request))
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(request, f"{grant.agent.name} no longer has access to {grant.tool.name}.")
    return back(request, "console:reviews")


urlpatterns = [
    path("reviews/", reviews_view, name="reviews"),
    path("reviews/<uuid:grant_id>/recertify", review_recertify_view, name="review_recertify"),
    path("reviews/<uuid:grant_id>/revoke", review_revoke_view, name="review_revoke"),
]
