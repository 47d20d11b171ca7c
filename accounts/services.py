"""State changes for organizations, memberships, agents and agent keys."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts import keys
from accounts.lifecycle import VALID_UNTIL_PAST, agents_handle_owner_departure, owner_for_new_agent
from accounts.models import (
    GRANT_DURATION_MAX,
    GRANT_DURATION_MIN,
    Agent,
    AgentKey,
    AgentStatus,
    Membership,
    Organization,
    Role,
    User,
)
from accounts.permissions import Capability, HumanActor, Operator, acting_user, require
from agentkey.core import statements
from agentkey.core.errors import Conflict, FieldError, Forbidden, Message, Unauthenticated, ValidationFailed
from audit.models import Action
from audit.services import audit_record

# --- messages (the original AgentKey's wording where it has one) ----------------------------------

MISSING_BEARER = Message(
    "Missing bearer token.",
    "Include an Authorization header: Bearer <your_api_key>. Get your API key from the AgentKey dashboard.",
)
INVALID_KEY = Message(
    "Invalid API key.",
    "This API key is not recognized. Check that AGENTKEY_API_KEY is set correctly. "
    "If the key was rotated, ask your admin for the new one.",
)
KEY_REVOKED = Message(
    "This API key has been rotated out.",
    "Use the newer key for this agent (AGENTKEY_API_KEY). If you do not have it, ask your admin for it.",
)
KEY_EXPIRED = Message(
    "This API key has expired.",
    "Ask your admin to rotate this agent's key and set the new one as AGENTKEY_API_KEY.",
)
AGENT_SUSPENDED = Message(
    "This agent has been suspended.",
    "Contact your admin to reactivate this agent or create a new one.",
)
AGENT_VALIDITY_ENDED = Message(
    "This agent's validity ended at {when}.",
    "Ask its owner to extend it on the agent's page in the AgentKey dashboard, or use another agent.",
)
NAME_REQUIRED = Message("A name is required.", "Give a name of 1 to {limit} characters.")
AGENT_NAME_TAKEN = Message(
    "An agent named {name!r} already exists in this organization.",
    "Pick another name, or rotate the existing agent's key instead.",
)
ALREADY_SUSPENDED = Message("The agent is already suspended.", "Reactivate it if it should work again.")
NOT_SUSPENDED = Message("The agent is not suspended.", "Nothing to do: it can already authenticate.")
GRACE_INVALID = Message(
    "The grace period must be between 0 and 30 days.",
    "Give a duration such as 1h or 1d, or 0 to cut the old key off now.",
)
MAX_GRANT_DURATION_INVALID = Message(
    "The maximum grant duration must be between 1 hour and 30 days.",
    "Choose a maximum such as 1h, 8h, 1d, 7d or 30d, or no maximum.",
)
ALREADY_MEMBER = Message("{email} is already a member of this organization.", "Change their role instead.")

MAX_GRACE = timedelta(days=30)


@dataclass(frozen=True)
class IssuedKey:
    """A freshly minted key. ``plaintext`` exists only here, once; it is kept out of repr."""

    key: AgentKey
    plaintext: str = field(repr=False)
    #: When the keys this one replaced stop working (None for a new agent's first key).
    previous_keys_end: datetime | None = None


@dataclass(frozen=True)
class IssuedAgent:
    agent: Agent
    key: IssuedKey


def _clean_name(value: str, *, limit: int, field_name: str = "name") -> str:
    cleaned = " ".join((value or "").split())
    if not cleaned or len(cleaned) > limit:
        msg = NAME_REQUIRED.format(limit=limit)
        raise ValidationFailed(msg, details=[FieldError(field_name, msg.hint)])
    return cleaned


# --- organizations and members ---------------------------------------------------------------------


def org_create(*, name: str, actor: HumanActor | None = None, owner: User | None = None) -> Organization:
    """A new organization; ``owner`` (if given) becomes its first owner."""
    name = _clean_name(name, limit=120)
    base = slugify(name)[:120] or "org"
    with transaction.atomic():
        slug, n = base, 1
        while Organization.objects.filter(slug=slug).exists():
            n += 1
            slug = f"{base}-{n}"
        org = Organization.objects.create(name=name, slug=slug)
        membership = Membership.objects.create(org=org, user=owner, role=Role.OWNER) if owner else None
        audit_record(
            action=Action.ORG_CREATED,
            actor=actor or membership or Operator(label="system"),
            target=org,
            metadata={"slug": slug},
        )
    return org


def _seconds(value: object) -> int | None:
    return int(value.total_seconds()) if isinstance(value, timedelta) else None


def _org_setting_change(
    *, org: Organization, actor: HumanActor, setting: str, value: object, in_seconds: bool = False
) -> Organization:
    """Lock the organization row, change one setting and audit it as ``org.settings_changed``
    (``setting``, ``from``, ``to``; ``from_seconds``, ``to_seconds`` for a duration). No change,
    no event. The caller has checked the permission and the value; ``org`` gets the new value.
    """
    with transaction.atomic():
        # NO KEY UPDATE, like the catalog writers: it does not conflict with foreign-key checks.
        locked = Organization.objects.select_for_update(no_key=True).get(pk=org.pk)
        previous = getattr(locked, setting)
        if previous != value:
            setattr(locked, setting, value)
            locked.save(update_fields=[setting])
            change: dict[str, object]
            if in_seconds:
                change = {"from_seconds": _seconds(previous), "to_seconds": _seconds(value)}
            else:
                change = {"from": previous, "to": value}
            audit_record(
                action=Action.ORG_SETTINGS_CHANGED,
                actor=actor,
                target=locked,
                metadata={"setting": setting, **change},
            )
    setattr(org, setting, getattr(locked, setting))
    return locked


def org_set_max_grant_duration(
    *, org: Organization, actor: HumanActor, max_grant_duration: timedelta | None
) -> Organization:
    """Set the longest access an approval, assignment or extension may give (None: no maximum).

    Applies to decisions from now on; access already granted keeps its expiry.
    """
    require(actor, Capability.MANAGE_ORG, org.id)
    if max_grant_duration is not None and not GRANT_DURATION_MIN <= max_grant_duration <= GRANT_DURATION_MAX:
        raise ValidationFailed(
            MAX_GRANT_DURATION_INVALID,
            details=[FieldError("max_grant_duration", MAX_GRANT_DURATION_INVALID.error)],
        )
    return _org_setting_change(
        org=org, actor=actor, setting="max_grant_duration", value=max_grant_duration, in_seconds=True
    )


def org_set_anomaly_auto_suspend(*, org: Organization, actor: HumanActor, enabled: bool) -> Organization:
    """Turn the organization's anomaly kill switch on or off (owners and admins): whether an
    anomaly alert suspends its agent at once. Audited as ``org.settings_changed``.

    Applies to alerts raised from now on; agents suspended earlier stay suspended.
    """
    require(actor, Capability.MANAGE_ORG, org.id)
    return _org_setting_change(org=org, actor=actor, setting="anomaly_auto_suspend", value=enabled)


def membership_add(*, org: Organization, user: User, role: Role, actor: HumanActor) -> Membership:
    require(actor, Capability.MANAGE_MEMBERS, org.id)
    with transaction.atomic():
        if Membership.objects.filter(org=org, user=user).exists():
            raise Conflict(ALREADY_MEMBER.format(email=user.email))
        membership = Membership.objects.create(org=org, user=user, role=role)
        audit_record(action=Action.MEMBER_ADDED, actor=actor, target=membership, metadata={"role": str(role)})
    return membership


def user_save(*, user: User, actor: HumanActor, fields: list[str]) -> User:
    """Save a person edited by an operator (the admin) and audit which fields changed.

    Privilege flags are recorded with their new values: who made whom a
    superuser is exactly what an audit trail is for.
    """
    created = user.pk is None
    flags = {"is_active", "is_staff", "is_superuser"}
    with transaction.atomic():
        was_active = (
            not created and User.objects.filter(pk=user.pk).values_list("is_active", flat=True).first()
        )
        user.save()
        audit_record(
            action=Action.USER_CREATED if created else Action.USER_UPDATED,
            actor=actor,
            target=user,
            metadata={
                "fields": sorted(f for f in fields if f not in ("password", "password1", "password2")),
                **{flag: getattr(user, flag) for flag in sorted(flags & set(fields))},
            },
        )
        if was_active and not user.is_active:
            # A deactivated person has left every organization as far as their agents go.
            for membership in Membership.objects.filter(user=user).select_related("org"):
                agents_handle_owner_departure(org=membership.org, departing=user, actor=actor)
    return user


def user_password_changed(*, user: User, actor: HumanActor) -> None:
    """Record that an operator set someone's password (never the password itself)."""
    audit_record(action=Action.USER_PASSWORD_SET, actor=actor, target=user)


# --- agents ----------------------------------------------------------------------------------------


def _issue_key(
    *, agent: Agent, expires_at: datetime | None, previous_keys_end: datetime | None = None
) -> IssuedKey:
    plaintext = keys.generate()
    key = AgentKey.objects.create(
        agent=agent,
        prefix=plaintext[: keys.PREFIX_SHOWN],
        key_hash=keys.digest(plaintext),
        expires_at=expires_at,
    )
    return IssuedKey(key=key, plaintext=plaintext, previous_keys_end=previous_keys_end)


def agent_create(
    *,
    org: Organization,
    name: str,
    actor: HumanActor,
    description: str = "",
    key_expires_at: datetime | None = None,
    owner: User | None = None,
    valid_until: datetime | None = None,
) -> IssuedAgent:
    """A new agent and its first key. ``owner`` (a member; by default the person creating it)
    is accountable for it; after ``valid_until`` (optional) it is refused and then suspended."""
    require(actor, Capability.MANAGE_AGENTS, org.id)
    name = _clean_name(name, limit=100)
    description = (description or "").strip()[:1000]
    accountable = owner_for_new_agent(org=org, actor=actor, owner=owner)
    if valid_until is not None and valid_until <= timezone.now():
        raise ValidationFailed(VALID_UNTIL_PAST, details=[FieldError("valid_until", VALID_UNTIL_PAST.error)])
    try:
        with transaction.atomic():
            agent = Agent.objects.create(
                org=org,
                name=name,
                description=description,
                created_by=acting_user(actor),
                owner=accountable,
                valid_until=valid_until,
            )
            issued = _issue_key(agent=agent, expires_at=key_expires_at)
            metadata: dict[str, str] = {"key_prefix": issued.key.prefix}
            if accountable is not None and accountable != acting_user(actor):
                metadata["owner"] = accountable.email
            if valid_until is not None:
                metadata["valid_until"] = valid_until.isoformat()
            audit_record(action=Action.AGENT_CREATED, actor=actor, target=agent, metadata=metadata)
    except IntegrityError:
        raise Conflict(AGENT_NAME_TAKEN.format(name=name)) from None
    return IssuedAgent(agent=agent, key=issued)


def agent_key_rotate(
    *,
    agent: Agent,
    actor: HumanActor,
    grace: timedelta | None = None,
    expires_at: datetime | None = None,
) -> IssuedKey:
    """Mint a new key. The old live keys die now, or after ``grace``."""
    require(actor, Capability.MANAGE_AGENTS, agent.org_id)
    if grace is not None and not timedelta(0) <= grace <= MAX_GRACE:
        raise ValidationFailed(GRACE_INVALID, details=[FieldError("grace", GRACE_INVALID.error)])
    now = timezone.now()
    with transaction.atomic():
        Agent.objects.select_for_update().filter(pk=agent.pk).first()
        live = AgentKey.objects.filter(agent=agent, revoked_at__isnull=True)
        cutoff = now + grace if grace else now
        if grace:
            # A key already due to expire sooner keeps its earlier end.
            live.filter(expires_at__isnull=True).update(expires_at=cutoff)
            live.filter(expires_at__gt=cutoff).update(expires_at=cutoff)
        else:
            live.update(revoked_at=now)
        issued = _issue_key(agent=agent, expires_at=expires_at, previous_keys_end=cutoff)
        audit_record(
            action=Action.AGENT_KEY_ROTATED,
            actor=actor,
            target=agent,
            metadata={
                "key_prefix": issued.key.prefix,
                "grace_seconds": int(grace.total_seconds()) if grace else 0,
            },
        )
    return issued


def agent_suspend(*, agent: Agent, actor: HumanActor, reason: str = "") -> Agent:
    require(actor, Capability.MANAGE_AGENTS, agent.org_id)
    with transaction.atomic():
        updated = Agent.objects.filter(pk=agent.pk, status=AgentStatus.ACTIVE).update(
            status=AgentStatus.SUSPENDED, status_changed_at=timezone.now()
        )
        if not updated:
            raise Conflict(ALREADY_SUSPENDED)
        audit_record(
            action=Action.AGENT_SUSPENDED, actor=actor, target=agent, metadata={"reason": reason[:500]}
        )
    agent.refresh_from_db()
    return agent


def agent_reactivate(*, agent: Agent, actor: HumanActor) -> Agent:
    require(actor, Capability.MANAGE_AGENTS, agent.org_id)
    with transaction.atomic():
        updated = Agent.objects.filter(pk=agent.pk, status=AgentStatus.SUSPENDED).update(
            status=AgentStatus.ACTIVE, status_changed_at=timezone.now()
        )
        if not updated:
            raise Conflict(NOT_SUSPENDED)
        audit_record(action=Action.AGENT_REACTIVATED, actor=actor, target=agent)
    agent.refresh_from_db()
    return agent


# --- authentication --------------------------------------------------------------------------------


# The key lookup of every agent request, written once (agentkey/core/statements.py): the key
# hash is unique, so no ORDER BY; the key and its agent come back in one round trip.
_KEY_COLUMNS = statements.Columns(AgentKey, "k")
_AGENT_COLUMNS = statements.Columns(Agent, "a")
_KEY_AND_AGENT = statements.compose(
    "SELECT {k:*}, {a:*} FROM {k:table} JOIN {a:table} ON {a:id} = {k:agent} WHERE {k:key_hash} = %s LIMIT 1",
    k=_KEY_COLUMNS,
    a=_AGENT_COLUMNS,
)


def agent_authenticate(*, token: str) -> tuple[Agent, AgentKey]:
    """Resolve a presented key to its agent: one indexed lookup on the SHA-256.

    The lookup is by hash, so response timing reveals nothing about the key;
    the digest is still compared in constant time before it is trusted.
    """
    presented = keys.digest(token)
    found = statements.fetch_one(_KEY_AND_AGENT, [presented], _KEY_COLUMNS, _AGENT_COLUMNS)
    if found is None or not hmac.compare_digest(found[0].key_hash, presented):
        raise Unauthenticated(INVALID_KEY)
    key, agent = found
    AgentKey.agent.field.set_cached_value(key, agent)
    # Any revocation stamp refuses, whatever this host's clock says about it.
    if key.revoked_at is not None:
        raise Unauthenticated(KEY_REVOKED)
    if key.expires_at is not None and key.expires_at <= timezone.now():
        raise Unauthenticated(KEY_EXPIRED)
    if agent.status != AgentStatus.ACTIVE:
        # A suspended agent still knocking is a signal worth keeping, once a minute
        # per agent: whoever holds the key cannot flood the append-only log.
        if cache.add(f"audit:suspended:{agent.id}", 1, timeout=60):
            audit_record(action=Action.AUTH_REJECTED_SUSPENDED, actor=agent, target=agent)
        raise Forbidden(AGENT_SUSPENDED)
    # The agent row is already loaded: ending validity costs no query on the vend path.
    if agent.valid_until is not None and agent.valid_until <= timezone.now():
        if cache.add(f"audit:validity:{agent.id}", 1, timeout=60):
            audit_record(
                action=Action.AUTH_REJECTED_VALIDITY_ENDED,
                actor=agent,
                target=agent,
                metadata={"valid_until": agent.valid_until.isoformat()},
            )
        raise Forbidden(AGENT_VALIDITY_ENDED.format(when=f"{agent.valid_until:%Y-%m-%d %H:%M} UTC"))
    return agent, key
