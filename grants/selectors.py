"""Scoped reads for grants."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

from django.db.models import FilteredRelation, Q, QuerySet
from django.utils import timezone

from accounts.models import Agent
from catalog.models import AccessMode, Tool
from grants.models import AccessGrant, GrantStatus


class ToolAccess(NamedTuple):
    """One tool as one agent sees it. A named tuple: ``GET /api/tools`` builds one per tool of
    the organization (500 in the growth benchmark), and a frozen dataclass costs several times
    as much to build."""

    id: uuid.UUID
    name: str
    description: str
    your_access: str
    denial_reason: str | None
    expires_at: datetime | None
    proxied: bool = False


def tool_access_for_agent(agent: Agent) -> list[ToolAccess]:
    """Every tool of the agent's organization with this agent's access, newest first. One query."""
    rows = (
        Tool.objects.filter(org_id=agent.org_id)
        .annotate(mine=FilteredRelation("grants", condition=Q(grants__agent_id=agent.id)))
        .order_by("-created_at", "id")
        .values_list(
            "id",
            "name",
            "description",
            "access_mode",
            "mine__status",
            "mine__denial_reason",
            "mine__expires_at",
        )
    )
    now = timezone.now()
    approved, expired, proxy = GrantStatus.APPROVED.value, GrantStatus.EXPIRED.value, AccessMode.PROXY.value
    out = []
    for tool_id, name, description, access_mode, stored, denial_reason, expires_at in rows:
        lapsed = stored == approved and expires_at is not None and expires_at <= now
        status = expired if lapsed else stored
        out.append(
            ToolAccess(
                id=tool_id,
                name=name,
                description=description,
                your_access=status or "none",
                denial_reason=denial_reason or None,
                expires_at=expires_at if status == approved else None,
                proxied=access_mode == proxy,
            )
        )
    return out


def grants_for_org(org_id: uuid.UUID) -> QuerySet[AccessGrant]:
    return AccessGrant.objects.filter(org_id=org_id)


def pending_grants_for_org(org_id: uuid.UUID) -> QuerySet[AccessGrant]:
    return grants_for_org(org_id).filter(status=GrantStatus.PENDING).select_related("agent", "tool")


def time_bound_grants_for_org(org_id: uuid.UUID, now: datetime) -> QuerySet[AccessGrant]:
    """Approved access that has an expiry still ahead, soonest first."""
    return (
        grants_for_org(org_id)
        .filter(status=GrantStatus.APPROVED, expires_at__gt=now)
        .select_related("agent", "tool")
        .order_by("expires_at", "id")
    )
