"""Scoped reads for the catalog."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from accounts.models import Agent
from catalog.models import GuideSuggestion, SuggestionStatus, Tool, ToolSuggestion


def tools_visible_to_agent(agent: Agent) -> QuerySet[Tool]:
    return Tool.objects.filter(org_id=agent.org_id)


def tools_for_org(org_id: uuid.UUID) -> QuerySet[Tool]:
    return Tool.objects.filter(org_id=org_id)


def tool_suggestions_for_org(org_id: uuid.UUID) -> QuerySet[ToolSuggestion]:
    return ToolSuggestion.objects.filter(org_id=org_id)


def pending_suggestions_for_org(org_id: uuid.UUID) -> QuerySet[ToolSuggestion]:
    return tool_suggestions_for_org(org_id).filter(status=SuggestionStatus.PENDING)


def guide_suggestions_for_org(org_id: uuid.UUID) -> QuerySet[GuideSuggestion]:
    return GuideSuggestion.objects.filter(org_id=org_id)
