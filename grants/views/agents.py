"""Agents in the console: the list, and an agent's page (keys, access with revoke, activity).

Creating, rotating and suspending are in ``accounts.views.agents``; revoking a
grant posts to ``console:grant_revoke`` and comes back here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path
from django.utils import timezone

from accounts.console import console_view, membership_required
from accounts.models import Agent, AgentKey
from accounts.selectors import agents_for_org
from accounts.views.agents import OwnerForm, RotateForm, ValidityForm
from audit.models import AuditEvent
from grants.models import AccessGrant, GrantStatus
from grants.selectors import grants_for_org

ACTIVITY_ROWS = 25
KEYS_SHOWN = 20


def _approved_now(now: datetime) -> Q:
    """Approved and not past its expiry: what the agent can actually fetch."""
    return Q(status=GrantStatus.APPROVED) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))


def _agents_with_summary(org_id: uuid.UUID, now: datetime) -> QuerySet[Agent]:
    """The organization's agents with their approved-tool count and last audit event: one query.

    The last activity is a correlated ``LIMIT 1`` on the audit log's
    (org_id, agent_id, -id) index, so it stays cheap however long the log is.
    """
    approved = (
        grants_for_org(org_id)
        .filter(_approved_now(now), agent_id=OuterRef("pk"))
        .order_by()
        .values("agent_id")
        .annotate(n=Count("*"))
        .values("n")
    )
    last_event = (
        AuditEvent.objects.filter(org_id=org_id, agent_id=OuterRef("pk"))
        .order_by("-id")
        .values("created_at")[:1]
    )
    return (
        agents_for_org(org_id)
        .annotate(
            approved_tools=Coalesce(Subquery(approved, output_field=IntegerField()), Value(0)),
            last_activity=Subquery(last_event),
        )
        .order_by("name", "id")
    )


@console_view()
def agents_view(request: HttpRequest) -> HttpResponse:
    org_id = membership_required(request).org_id
    agents = _agents_with_summary(org_id, timezone.now())
    return render(request, "console/agents.html", {"section": "agents", "agents": agents})


@dataclass(frozen=True)
class GrantRow:
    grant: AccessGrant
    status: str

    @property
    def status_label(self) -> str:
        return str(GrantStatus(self.status).label)

    @property
    def revocable(self) -> bool:
        return self.status == GrantStatus.APPROVED


@dataclass(frozen=True)
class KeyRow:
    key: AgentKey
    state: str


def _key_state(key: AgentKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    return "live" if key.is_live(now) else "expired"


@console_view()
def agent_view(request: HttpRequest, agent_id: uuid.UUID) -> HttpResponse:
    org_id = membership_required(request).org_id
    agent = get_object_or_404(agents_for_org(org_id).select_related("created_by", "owner"), id=agent_id)
    now = timezone.now()
    # Only what the page shows: the key hash never leaves the database.
    keys = (
        AgentKey.objects.filter(agent=agent)
        .only("id", "agent_id", "prefix", "created_at", "expires_at", "revoked_at")
        .order_by("-created_at", "-id")[:KEYS_SHOWN]
    )
    grants = grants_for_org(org_id).filter(agent=agent).select_related("tool").order_by("tool__name", "id")
    events = AuditEvent.objects.filter(org_id=org_id, agent_id=agent.id).order_by("-id")[:ACTIVITY_ROWS]
    return render(
        request,
        "console/agent.html",
        {
            "section": "agents",
            "agent": agent,
            "keys": [KeyRow(key=k, state=_key_state(k, now)) for k in keys],
            "grants": [GrantRow(grant=g, status=g.effective_status(now)) for g in grants],
            "events": list(events),
            "activity_rows": ACTIVITY_ROWS,
            "rotate_form": RotateForm(auto_id="rotate-%s"),
            "owner_form": OwnerForm(auto_id="owner-%s", org_id=org_id, initial={"owner": agent.owner_id}),
            "validity_form": ValidityForm(auto_id="validity-%s", initial={"valid_until": agent.valid_until}),
            "validity_ended": agent.valid_until is not None and agent.valid_until <= now,
        },
    )


urlpatterns = [
    path("agents/", agents_view, name="agents"),
    path("agents/<uuid:agent_id>/", agent_view, name="agent"),
]
