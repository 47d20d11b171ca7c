"""The agent side of access: requests, the credential vend, the proxy's checks, guide suggestions."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import Agent
from agentkey.core import statements
from agentkey.core.errors import Conflict, Forbidden, Message, NotFound
from audit.models import Action
from audit.services import audit_record
from catalog.models import AuthType, CredentialMode, Tool
from catalog.services import (
    GuideSuggested,
    guide_suggest,
)
from grants.anomalies import after_request
from grants.models import AccessGrant, GrantStatus
from grants.services.common import (
    ALREADY_APPROVED,
    ALREADY_PENDING,
    CREDENTIAL_NOT_CONFIGURED,
    GUIDE_NEEDS_APPROVAL,
    TOOL_NOT_FOUND,
    _announce_request,
    _detach_secret,
    _hint_for,
    _save_dropping,
    check_duration,
)
from vault.models import Secret
from vault.services import secret_reveal

# --- agent side ------------------------------------------------------------------------------------


def grant_request(*, agent: Agent, tool: Tool, reason: str, duration: timedelta | None = None) -> AccessGrant:
    """An agent asks for access. Reopens a denied, revoked or expired grant; 409 if pending or approved."""
    if tool.org_id != agent.org_id:
        raise NotFound(TOOL_NOT_FOUND)
    if duration is not None:
        check_duration(duration)
    now = timezone.now()
    with transaction.atomic():
        grant = AccessGrant.objects.select_for_update().filter(agent=agent, tool=tool).first()
        reopened_from = None
        if grant is None:
            try:
                with transaction.atomic():
                    grant = AccessGrant.objects.create(
                        org_id=agent.org_id,
                        agent=agent,
                        tool=tool,
                        reason=reason,
                        requested_duration=duration,
                        requested_at=now,
                    )
            except IntegrityError:
                # A concurrent request for the same pair won the insert.
                raise Conflict(ALREADY_PENDING) from None
        else:
            status = grant.effective_status(now)
            if status == GrantStatus.PENDING:
                raise Conflict(ALREADY_PENDING, request_id=str(grant.id))
            if status == GrantStatus.APPROVED:
                raise Conflict(ALREADY_APPROVED.format(tool_id=tool.id))
            reopened_from = status
            old_secret = _detach_secret(grant)
            grant.status = GrantStatus.PENDING
            grant.reason = reason
            grant.requested_duration = duration
            grant.denial_reason = ""
            grant.expires_at = None
            grant.decided_by = None
            grant.decided_by_label = ""
            grant.decided_at = None
            grant.requested_at = now
            _save_dropping(grant, old_secret)
        grant.agent, grant.tool = agent, tool
        metadata: dict[str, Any] = {"tool_id": str(tool.id), "tool_name": tool.name, "reason": reason}
        if duration is not None:
            metadata["duration_seconds"] = int(duration.total_seconds())
        if reopened_from:
            metadata["reopened_from"] = reopened_from
        audit_record(action=Action.GRANT_REQUESTED, actor=agent, target=grant, metadata=metadata)
        _announce_request(grant, agent, tool, reason)
        after_request(agent=agent, tool=tool, reopened=reopened_from is not None, now=now)
    return grant


USE_THE_PROXY = Message(
    "This tool is used through the AgentKey proxy: its credential is never handed out.",
    "Call the tool's API through {proxy_url}<path> (any method) with your AgentKey key as "
    "Authorization: Bearer; AgentKey adds the tool's credential and forwards the call.",
)
NOT_A_PROXY_TOOL = Message(
    "This tool is not set up for the proxy.",
    "Fetch its credential via GET /api/tools/{tool_id}/credentials and call the tool directly.",
)


@dataclass(frozen=True)
class Vended:
    tool: Tool
    credential: str | dict[str, Any]
    expires_at: datetime | None


# The grant lookup of every vend, written once (agentkey/core/statements.py): the grant, its
# tool and both secrets it may use, in one round trip. (agent, tool) is unique: no ORDER BY.
_GRANT = statements.Columns(AccessGrant, "g")
_TOOL = statements.Columns(Tool, "t")
_TOOL_SECRET = statements.Columns(Secret, "ts")
_GRANT_SECRET = statements.Columns(Secret, "gs")
_GRANT_TOOL_SECRETS = statements.compose(
    "SELECT {g:*}, {t:*}, {ts:*}, {gs:*} FROM {g:table}"
    " JOIN {t:table} ON {t:id} = {g:tool}"
    " LEFT JOIN {ts:table} ON {ts:id} = {t:secret}"
    " LEFT JOIN {gs:table} ON {gs:id} = {g:secret}"
    " WHERE {g:agent} = %s AND {g:tool} = %s AND {t:org} = %s LIMIT 1",
    g=_GRANT,
    t=_TOOL,
    ts=_TOOL_SECRET,
    gs=_GRANT_SECRET,
)


def _approved_grant(*, agent: Agent, tool_id: uuid.UUID) -> AccessGrant:
    """One query for grant + tool + both possible secrets; 403 with a state hint unless approved now.

    Nothing is cached: a revoke or an expiry applies on the very next call.
    """
    found = statements.fetch_one(
        _GRANT_TOOL_SECRETS,
        [
            statements.prep(AccessGrant, "agent", agent.id),
            statements.prep(AccessGrant, "tool", tool_id),
            statements.prep(Tool, "org", agent.org_id),
        ],
        _GRANT,
        _TOOL,
        _TOOL_SECRET,
        _GRANT_SECRET,
    )
    if found is None:
        if not Tool.objects.filter(id=tool_id, org_id=agent.org_id).exists():
            raise NotFound(TOOL_NOT_FOUND)
        raise Forbidden(_hint_for(None, tool_id))
    grant: AccessGrant = found[0]
    tool: Tool = found[1]
    tool_secret, grant_secret = found[2], found[3]
    AccessGrant.tool.field.set_cached_value(grant, tool)
    AccessGrant.secret.field.set_cached_value(grant, grant_secret)
    Tool.secret.field.set_cached_value(tool, tool_secret)
    status = grant.effective_status(timezone.now())
    if status != GrantStatus.APPROVED:
        raise Forbidden(_hint_for(status, tool_id))
    if tool.is_canary:
        # Marking a decoy ends its grants (grants.services.tool_edit); this refuses, shown as
        # revoked, any approval that predates that (a grant from before the upgrade that
        # brought tool_edit, a row written around the services). The row is already loaded.
        raise Forbidden(_hint_for(GrantStatus.REVOKED, tool_id))
    grant.agent = agent
    return grant


def _secret_of(grant: AccessGrant) -> Secret:
    tool = grant.tool
    secret = grant.secret if tool.credential_mode == CredentialMode.PER_AGENT else tool.secret
    if secret is None:
        raise Conflict(CREDENTIAL_NOT_CONFIGURED)
    return secret


def _audit_committed(*, action: Action, agent: Agent, tool: Tool, metadata: dict[str, Any]) -> None:
    """Write an audit row that is committed when this returns (fail closed: it raises otherwise)."""
    if connection.get_autocommit():
        # Autocommit: the INSERT is committed by the time it returns, in one round trip.
        audit_record(action=action, actor=agent, target=tool, metadata=metadata)
    else:
        # Inside a caller's transaction the row would commit later, or not at all:
        # durable=True refuses to run nested, so the guarantee cannot silently weaken.
        with transaction.atomic(durable=True):
            audit_record(action=action, actor=agent, target=tool, metadata=metadata)


def credential_vend(*, agent: Agent, tool_id: uuid.UUID) -> Vended:
    """The hot path (DESIGN §5): one query for grant + tool + ciphertext,
    decrypt, commit the ``credential.vended`` row, then return.

    A proxy-mode tool never hands its credential out: 403 with the proxy URL.
    """
    grant = _approved_grant(agent=agent, tool_id=tool_id)
    tool = grant.tool
    if tool.proxied:
        raise Forbidden(USE_THE_PROXY.format(proxy_url=tool.proxy_path), proxy_url=tool.proxy_path)
    plaintext = secret_reveal(secret=_secret_of(grant))
    metadata = {"tool_id": str(tool.id), "tool_name": tool.name, "grant_id": str(grant.id)}
    _audit_committed(action=Action.CREDENTIAL_VENDED, agent=agent, tool=tool, metadata=metadata)
    credential: str | dict[str, Any] = plaintext
    if tool.auth_type == AuthType.OAUTH_TOKEN:
        try:
            parsed = json.loads(plaintext)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            credential = parsed
    return Vended(tool=tool, credential=credential, expires_at=grant.expires_at)


@dataclass(frozen=True)
class ProxyAccess:
    """An approved grant of a proxy-mode tool and its decrypted credential (never in a repr)."""

    grant: AccessGrant
    tool: Tool
    credential: str = field(repr=False)


def credential_proxy_open(*, agent: Agent, tool_id: uuid.UUID) -> ProxyAccess:
    """The vend's checks for a proxied call (docs/proxy.md): approved now, the key and the
    agent already checked by authentication, then decrypt. Writes nothing: the call is
    audited by :func:`credential_proxied_record` once the upstream has answered."""
    grant = _approved_grant(agent=agent, tool_id=tool_id)
    tool = grant.tool
    if not tool.proxied:
        raise Forbidden(NOT_A_PROXY_TOOL.format(tool_id=tool.id))
    return ProxyAccess(grant=grant, tool=tool, credential=secret_reveal(secret=_secret_of(grant)))


def credential_proxied_record(
    *,
    agent: Agent,
    access: ProxyAccess,
    method: str,
    path: str,
    status: int | None,
    duration_ms: int,
    outcome: str = "forwarded",
) -> None:
    """Commit one ``credential.proxied`` row: method, path (no query), upstream status, duration.
    Never bodies, never headers. Raises when the row cannot be written (the caller fails closed)."""
    tool = access.tool
    metadata: dict[str, Any] = {
        "tool_id": str(tool.id),
        "tool_name": tool.name,
        "grant_id": str(access.grant.id),
        "method": method,
        "path": path[:500],
        "status": status,
        "duration_ms": duration_ms,
        "outcome": outcome,
    }
    _audit_committed(action=Action.CREDENTIAL_PROXIED, agent=agent, tool=tool, metadata=metadata)


def guide_suggest_as_agent(*, agent: Agent, tool: Tool, learned: str, why: str) -> GuideSuggested:
    """Only an agent that has (approved) access may propose guide improvements."""
    grant = AccessGrant.objects.filter(agent=agent, tool=tool).first()
    if grant is None or grant.effective_status() != GrantStatus.APPROVED:
        raise Forbidden(GUIDE_NEEDS_APPROVAL)
    return guide_suggest(agent=agent, tool=tool, learned=learned, why=why)
