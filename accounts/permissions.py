"""Who may do what. Checked in services, so every interface gets the same answer."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from accounts.models import Membership, Role, User
from agentkey.core.errors import Forbidden, Message
from audit.models import ActorType
from audit.services import AuditRef


class Capability(enum.StrEnum):
    MANAGE_MEMBERS = "manage_members"
    MANAGE_ORG = "manage_org"  # organization settings, such as the maximum grant duration
    MANAGE_AGENTS = "manage_agents"
    MANAGE_TOOLS = "manage_tools"
    DECIDE_GRANTS = "decide_grants"
    VIEW = "view"
    READ_AUDIT = "read_audit"


ROLE_CAPABILITIES: dict[str, frozenset[Capability]] = {
    Role.OWNER: frozenset(Capability),
    Role.ADMIN: frozenset(
        {
            Capability.MANAGE_ORG,
            Capability.MANAGE_AGENTS,
            Capability.MANAGE_TOOLS,
            Capability.DECIDE_GRANTS,
            Capability.VIEW,
            Capability.READ_AUDIT,
        }
    ),
    Role.APPROVER: frozenset({Capability.DECIDE_GRANTS, Capability.VIEW}),
    Role.AUDITOR: frozenset({Capability.VIEW, Capability.READ_AUDIT}),
}

NOT_ALLOWED = Message(
    "Your role does not allow this ({capability}).",
    "Ask an owner of the organization to change your role.",
)
WRONG_ORGANIZATION = Message(
    "You are not a member of this organization.",
    "Switch to the organization that owns this item.",
)


@dataclass(frozen=True)
class Operator:
    """Someone with shell access to the server (manage.py) or a Django superuser.

    They can read the database and the master keys anyway, so role checks do
    not apply; everything they do is still audited under their label.
    """

    label: str
    user: User | None = None

    def audit_actor(self) -> AuditRef:
        if self.user is not None:
            return AuditRef(type=ActorType.HUMAN, id=str(self.user.pk), label=self.label)
        return AuditRef(type=ActorType.SYSTEM, id="", label=self.label)

    @property
    def acting_user(self) -> User | None:
        return self.user


HumanActor = Membership | Operator


def acting_user(actor: HumanActor) -> User | None:
    return actor.user if isinstance(actor, Membership) else actor.acting_user


def require(actor: HumanActor, capability: Capability, org_id: uuid.UUID) -> None:
    """Raise Forbidden unless ``actor`` may exercise ``capability`` in ``org_id``."""
    if isinstance(actor, Operator):
        return
    if actor.org_id != org_id:
        raise Forbidden(WRONG_ORGANIZATION)
    if capability not in ROLE_CAPABILITIES.get(actor.role, frozenset()):
        raise Forbidden(NOT_ALLOWED.format(capability=capability.value))
