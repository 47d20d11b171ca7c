"""Adding and changing tools: a new tool opens access requests for the agents that suggested it;
marking a tool as a canary ends every access to it."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import AgentStatus, Organization
from accounts.permissions import Capability, HumanActor, require
from agentkey.core.errors import Conflict
from audit.models import Action
from audit.services import audit_record
from catalog.models import Tool, ToolSuggestion
from catalog.services import (
    Backing,
    ToolCreated,
    suggestion_accept,
    tool_create,
    tool_update,
)
from grants.models import AccessGrant, GrantStatus
from grants.services.common import _announce_request, revoke_locked

#: The revoke reason of access ended because its tool became a canary.
CANARY_MARKED = "the tool was marked as a canary (a decoy)"


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


def tool_edit(*, tool: Tool, actor: HumanActor, **fields: Any) -> Tool:
    """Change a tool (``catalog.services.tool_update``, same arguments). Every interface that
    edits a tool calls this, because marking a tool as a canary (``is_canary=True``) ends every
    approved or pending grant of it in the same transaction, each audited and announced like a
    revoke: the agent's next vend gets the revoked hint, and ``refuse_canary`` keeps it from
    being approved or assigned again. (The vend also refuses a canary's grant, for approvals
    that predate the mark.)
    """
    if not fields.get("is_canary"):
        return tool_update(tool=tool, actor=actor, **fields)
    require(actor, Capability.MANAGE_TOOLS, tool.org_id)
    with transaction.atomic():
        # The tool row is locked before its grants: a grant inserted for it meanwhile (its foreign
        # key check) waits for this commit. The flag is read from the locked row, not from the
        # caller's copy, which may be stale.
        tool.is_canary = (
            Tool.objects.select_for_update().filter(pk=tool.pk).values_list("is_canary", flat=True).get()
        )
        marked = not tool.is_canary
        tool_update(tool=tool, actor=actor, **fields)
        if marked:
            _end_access_to_canary(tool=tool, actor=actor)
    return tool


def _end_access_to_canary(*, tool: Tool, actor: HumanActor) -> None:
    now = timezone.now()
    ended = list(
        AccessGrant.objects.select_for_update(of=("self",))
        .select_related("agent", "secret")
        .filter(tool_id=tool.id, status__in=(GrantStatus.APPROVED, GrantStatus.PENDING))
        .order_by("id")
    )
    for grant in ended:
        grant.tool = tool
        revoke_locked(grant, actor=actor, reason=CANARY_MARKED, now=now)
