"""Writing audit events. Call inside the same transaction as the change."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from django.utils import timezone

from agentkey.core import context, statements
from audit import signing
from audit.models import Action, ActorType, AuditEvent


@dataclass(frozen=True)
class AuditRef:
    """A snapshot of who or what an event is about."""

    type: str
    id: str
    label: str
    org_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    tool_id: uuid.UUID | None = None


class Auditable(Protocol):
    def audit_ref(self) -> AuditRef: ...


class AuditActor(Protocol):
    def audit_actor(self) -> AuditRef: ...


@dataclass(frozen=True)
class SystemActor:
    """Work done by the operator's tooling (manage.py) or a scheduled job."""

    label: str

    def audit_actor(self) -> AuditRef:
        return AuditRef(type=ActorType.SYSTEM, id="", label=self.label)


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def audit_export_record(
    *, actor: AuditActor, org_id: uuid.UUID, export_format: str, filters: Mapping[str, str]
) -> AuditEvent:
    """Who took a copy of the log, in which format and with which filters: itself an audit event."""
    return audit_record(
        action=Action.AUDIT_EXPORTED,
        actor=actor,
        org_id=org_id,
        metadata={"format": export_format, "filters": {k: v[:100] for k, v in sorted(filters.items()) if v}},
    )


def audit_record(
    *,
    action: Action,
    actor: AuditActor,
    target: Auditable | None = None,
    org_id: uuid.UUID | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Insert one event. Never pass secret values in ``metadata``."""
    who = actor.audit_actor()
    what = target.audit_ref() if target is not None else None
    if org_id is None:
        org_id = (what.org_id if what is not None else None) or who.org_id
    ctx = context.current()
    refs = [r for r in (what, who) if r is not None]
    agent_id = next((r.agent_id for r in refs if r.agent_id), None)
    tool_id = next((r.tool_id for r in refs if r.tool_id), None)
    row: dict[str, Any] = {
        "created_at": timezone.now(),
        "org_id": org_id,
        "actor_type": str(who.type),
        "actor_id": who.id,
        "actor_label": _clip(who.label, 200),
        "action": str(action),
        "target_type": what.type if what else "",
        "target_id": what.id if what else "",
        "target_label": _clip(what.label, 200) if what else "",
        "agent_id": agent_id,
        "tool_id": tool_id,
        "metadata": signing.canonical_metadata(dict(metadata or {})),
        "ip": signing.canonical_ip(ctx.ip),
        "request_id": ctx.request_id,
    }
    # Signed before the INSERT, without the id (assigned by the database in that same
    # INSERT): the vend stays one round trip; checkpoints bind ids (audit.sealing).
    canonical = {
        **row,
        "created_at": signing.canonical_time(row["created_at"]),
        "org_id": _uuid_text(org_id),
        "agent_id": _uuid_text(agent_id),
        "tool_id": _uuid_text(tool_id),
    }
    return _INSERT.save(AuditEvent(**row, signature=signing.sign_event(canonical)))


# Every audit row goes in through one statement written once (agentkey/core/statements.py):
# on the vend path Model.save() cost more than the INSERT's round trip. AuditEvent has no
# signal receivers and no parent model, so nothing else that save() does applies.
_INSERT = statements.Insert(AuditEvent)


def _uuid_text(value: uuid.UUID | None) -> str | None:
    # PostgreSQL renders uuid columns lowercase and hyphenated; so does uuid.UUID.
    return str(uuid.UUID(str(value))) if value is not None else None
