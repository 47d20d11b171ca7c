"""State changes for tools, usage guides and suggestions.

Interfaces create tools through ``grants.services.tool_add``: adding a tool
accepts matching suggestions here and then opens access requests for their
backers there, in one transaction.
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import Agent, Organization
from accounts.permissions import Capability, HumanActor, acting_user, require
from agentkey.core.errors import Conflict, FieldError, Message, ValidationFailed
from agentkey.core.links import console_link
from audit.models import Action
from audit.services import audit_record
from catalog.models import (
    MAX_REQUIRED_APPROVALS,
    AccessMode,
    AuthType,
    CredentialMode,
    GuideSuggestion,
    GuideSuggestionBacker,
    GuideVersion,
    SuggestionBacker,
    SuggestionStatus,
    Tool,
    ToolSuggestion,
)
from catalog.normalize import normalize_name, normalize_text, normalize_url
from catalog.upstream import ORIGIN_REQUIRED, check_access_mode, clean_injection, clean_origin
from notifications.models import Event
from notifications.services import notify
from vault.services import secret_create, secret_replace

SUGGESTION_COOLDOWN = timedelta(hours=24)

TOOL_NAME_TAKEN = Message(
    "A tool named {name!r} already exists in this organization.",
    "Edit the existing tool, or choose a different name.",
)
CONFIG_KEY_INVALID = Message(
    "The config key {key!r} has no letters or digits.",
    "Use a short slug such as linear or github-prod.",
)
CONFIG_KEY_TAKEN = Message(
    "The config key {key!r} is already used by another tool.",
    "Choose a different config key.",
)
INVALID_URL = Message("Enter a valid HTTP or HTTPS URL.", "Use a URL such as https://linear.app.")
PER_AGENT_NO_SHARED = Message(
    "A per-agent tool has no shared credential.",
    "Give each agent its credential when you approve its request.",
)
NOT_SHARED = Message(
    "Only shared tools have a tool-level credential.",
    "For per-agent tools, each approved grant holds its own credential.",
)
APPROVALS_OUT_OF_RANGE = Message(
    "A tool requires between 1 and {most} approvals.",
    "Choose 1 (one approver decides) up to {most} distinct approvers; access is never open without one.",
)
MODE_IS_FIXED = Message(
    "The credential mode of an existing tool cannot change.",
    "Create a new tool with the other mode and migrate agents to it.",
)
TOOL_EXISTS = Message(
    "This tool already exists in the catalog.",
    "Call POST /api/tools/{tool_id}/request with this tool_id to request access immediately.",
)
SUGGESTION_COOLING_DOWN = Message(
    "This tool suggestion was recently dismissed.",
    "Wait for the cooldown to expire, then suggest it again if it is still needed.",
)
SUGGESTION_NOT_PENDING = Message(
    "This suggestion is no longer pending.",
    "Refresh the inbox: someone already decided it.",
)
GUIDE_SUGGESTION_DISMISSED = Message(
    "This instruction suggestion was dismissed for the current guide version.",
    "Submit it again only after the usage guide changes.",
)
GUIDE_CHANGED = Message(
    "The usage guide changed since you opened it (it is now version {current}).",
    "Reload the page, carry your change over to the new version and save again.",
)
GUIDE_TOO_LONG = Message("The usage guide is longer than 20,000 characters.", "Shorten it.")

SUGGESTED_MESSAGE = "Your tool suggestion has been submitted. A human admin will review it."
SUPPORTED_MESSAGE = "Your support has been added to an existing pending suggestion."
GUIDE_SUGGESTED_MESSAGE = "Your instruction suggestion has been submitted. A human admin will review it."
GUIDE_SUPPORTED_MESSAGE = "Your support has been added to an existing pending instruction suggestion."
TOOL_EXISTS_MESSAGE = "This tool already exists in the catalog. Request access to it directly."
GUIDE_DISMISSED_MESSAGE = (
    "The admin dismissed this suggestion for the current guide version. "
    "Submit it again only after the guide changes."
)


class Keep(enum.Enum):
    """Sentinel for "leave this field as it is" where None means "clear it"."""

    KEEP = "keep"


KEEP = Keep.KEEP


def isoformat(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


# --- tools -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backing:
    agent: Agent
    reason: str


@dataclass(frozen=True)
class ToolCreated:
    tool: Tool
    accepted: list[ToolSuggestion]
    backers: list[Backing]


def _identity(name: str, url: str) -> tuple[str, str, str]:
    normalized = normalize_name(name)
    if not url.strip():
        return normalized, "", ""
    parsed = normalize_url(url)
    if parsed is None:
        raise ValidationFailed(INVALID_URL, details=[FieldError("url", INVALID_URL.error)])
    return normalized, parsed.url, parsed.domain


def _matching(normalized: str, domain: str) -> Q:
    match = Q(normalized_name=normalized)
    if domain:
        match |= Q(normalized_domain=domain)
    return match


def _lock_catalog(org_id: uuid.UUID) -> None:
    """Serialize catalog changes of one organization (suggestions, new tools).

    FOR NO KEY UPDATE: it orders these writers among themselves but does not
    conflict with the KEY SHARE locks that foreign-key checks take on the same
    row, which a plain FOR UPDATE does (and deadlocks against).
    """
    Organization.objects.select_for_update(no_key=True).filter(pk=org_id).first()


def _proxy_settings(
    *, access_mode: str, upstream_origin: str, inject_as: str, inject_name: str, inject_template: str
) -> dict[str, str]:
    """Validated proxy-mode fields (catalog.upstream). A vend tool may keep an origin for later."""
    check_access_mode(access_mode)
    if access_mode == AccessMode.VEND and not inject_name.strip():
        inject_name, inject_template = "Authorization", "Bearer {credential}"
    injection = clean_injection(inject_as=inject_as, name=inject_name, template=inject_template)
    if access_mode == AccessMode.PROXY and not upstream_origin:
        raise ValidationFailed(
            ORIGIN_REQUIRED, details=[FieldError("upstream_origin", ORIGIN_REQUIRED.error)]
        )
    return {
        "access_mode": access_mode,
        "upstream_origin": upstream_origin,
        "inject_as": injection.inject_as,
        "inject_name": injection.name,
        "inject_template": injection.template,
    }


def _unique_config_key(org: Organization, name: str) -> str:
    base = slugify(name)[:70] or "tool"
    key, n = base, 1
    while Tool.objects.filter(org=org, config_key=key).exists():
        n += 1
        key = f"{base}-{n}"
    return key


def tool_create(
    *,
    org: Organization,
    actor: HumanActor,
    name: str,
    description: str = "",
    url: str = "",
    auth_type: str = AuthType.API_KEY,
    credential_mode: str = CredentialMode.SHARED,
    credential: str | None = None,
    usage_guide: str = "",
    config_key: str = "",
    credential_expires_at: datetime | None = None,
    access_mode: str = AccessMode.VEND,
    upstream_origin: str = "",
    inject_as: str = "header",
    inject_name: str = "Authorization",
    inject_template: str = "Bearer {credential}",
    required_approvals: int = 1,
    separation_of_duties: bool = False,
    is_canary: bool = False,
) -> ToolCreated:
    """Create a tool and accept the pending suggestions it answers.

    Returns the backers of those suggestions; ``grants.services.tool_add``
    turns them into pending access requests in the same transaction.
    ``access_mode="proxy"`` needs ``upstream_origin`` (docs/proxy.md).
    """
    require(actor, Capability.MANAGE_TOOLS, org.id)
    name = " ".join(name.split())
    if not name or len(name) > 120 or not normalize_name(name):
        raise ValidationFailed(
            Message("A tool needs a name.", "Give a name of 1 to 120 characters with letters or digits."),
            details=[FieldError("name", "Give a name of 1 to 120 characters with letters or digits.")],
        )
    if credential_mode == CredentialMode.PER_AGENT and credential:
        raise ValidationFailed(
            PER_AGENT_NO_SHARED, details=[FieldError("credential", PER_AGENT_NO_SHARED.error)]
        )
    if len(usage_guide) > 20000:
        raise ValidationFailed(GUIDE_TOO_LONG, details=[FieldError("usage_guide", GUIDE_TOO_LONG.error)])
    _check_required_approvals(required_approvals)
    normalized, clean_url, domain = _identity(name, url)
    proxy = _proxy_settings(
        access_mode=access_mode,
        upstream_origin=clean_origin(upstream_origin) if upstream_origin.strip() else "",
        inject_as=inject_as,
        inject_name=inject_name,
        inject_template=inject_template,
    )
    now = timezone.now()
    with transaction.atomic():
        _lock_catalog(org.id)
        if Tool.objects.filter(org=org, normalized_name=normalized).exists():
            raise Conflict(TOOL_NAME_TAKEN.format(name=name))
        key = slugify(config_key)[:80] if config_key else _unique_config_key(org, name)
        if not key:
            msg = CONFIG_KEY_INVALID.format(key=config_key)
            raise ValidationFailed(msg, details=[FieldError("config_key", msg.error)])
        if Tool.objects.filter(org=org, config_key=key).exists():
            raise Conflict(CONFIG_KEY_TAKEN.format(key=key))
        tool = Tool.objects.create(
            org=org,
            config_key=key,
            name=name,
            normalized_name=normalized,
            description=description.strip(),
            url=clean_url,
            normalized_domain=domain,
            auth_type=auth_type,
            credential_mode=credential_mode,
            secret=secret_create(plaintext=credential) if credential else None,
            credential_rotated_at=now if credential else None,
            credential_expires_at=credential_expires_at,
            usage_guide=usage_guide,
            current_guide_version=1,
            created_by=acting_user(actor),
            owner=acting_user(actor),
            required_approvals=required_approvals,
            separation_of_duties=separation_of_duties,
            is_canary=is_canary,
            **proxy,
        )
        GuideVersion.objects.create(
            tool=tool, version=1, content=usage_guide, created_by_label=actor.audit_actor().label
        )
        audit_record(
            action=Action.TOOL_CREATED,
            actor=actor,
            target=tool,
            metadata={
                "auth_type": auth_type,
                "credential_mode": credential_mode,
                "has_credential": bool(credential),
                "access_mode": proxy["access_mode"],
                **({"is_canary": True} if is_canary else {}),
                **({"upstream_origin": proxy["upstream_origin"]} if proxy["upstream_origin"] else {}),
            },
        )
        accepted, backers = _accept_matching_suggestions(tool=tool, actor=actor)
    return ToolCreated(tool=tool, accepted=accepted, backers=backers)


def _accept_matching_suggestions(
    *, tool: Tool, actor: HumanActor
) -> tuple[list[ToolSuggestion], list[Backing]]:
    suggestions = list(
        ToolSuggestion.objects.select_for_update()
        .filter(
            _matching(tool.normalized_name, tool.normalized_domain),
            org_id=tool.org_id,
            status=SuggestionStatus.PENDING,
        )
        .order_by("created_at")
    )
    backers: dict[object, Backing] = {}
    for suggestion in suggestions:
        for backing in _mark_accepted(suggestion, tool, actor):
            backers.setdefault(backing.agent.id, backing)
    return suggestions, list(backers.values())


def _mark_accepted(suggestion: ToolSuggestion, tool: Tool, actor: HumanActor) -> list[Backing]:
    suggestion.status = SuggestionStatus.ACCEPTED
    suggestion.converted_tool = tool
    suggestion.decided_by = acting_user(actor)
    suggestion.decided_at = timezone.now()
    suggestion.dismissed_until = None
    suggestion.save(
        update_fields=[
            "status",
            "converted_tool",
            "decided_by",
            "decided_at",
            "dismissed_until",
            "updated_at",
        ]
    )
    audit_record(
        action=Action.TOOL_SUGGESTION_ACCEPTED,
        actor=actor,
        target=suggestion,
        metadata={"tool_id": str(tool.id), "tool_name": tool.name},
    )
    return [
        Backing(agent=b.agent, reason=b.latest_reason)
        for b in suggestion.backers.select_related("agent").order_by("created_at")
    ]


def suggestion_accept(*, suggestion: ToolSuggestion, tool: Tool, actor: HumanActor) -> list[Backing]:
    """Mark a pending suggestion as answered by an existing ``tool``; returns its backers.

    Interfaces call ``grants.services.tool_suggestion_accept_into``, which also
    opens the backers' access requests.
    """
    require(actor, Capability.MANAGE_TOOLS, suggestion.org_id)
    if tool.org_id != suggestion.org_id:
        raise Conflict(SUGGESTION_NOT_PENDING)
    with transaction.atomic():
        locked = ToolSuggestion.objects.select_for_update().get(pk=suggestion.pk)
        if locked.status != SuggestionStatus.PENDING:
            raise Conflict(SUGGESTION_NOT_PENDING)
        return _mark_accepted(locked, tool, actor)


def proxy_changes(
    tool: Tool,
    *,
    access_mode: str | None,
    upstream_origin: str | None,
    inject_as: str | None,
    inject_name: str | None,
    inject_template: str | None,
) -> dict[str, str]:
    """The proxy fields that change, validated together with the ones that stay."""
    wanted = (access_mode, upstream_origin, inject_as, inject_name, inject_template)
    if all(value is None for value in wanted):
        return {}
    origin = tool.upstream_origin
    if upstream_origin is not None and upstream_origin.strip() != tool.upstream_origin:
        origin = clean_origin(upstream_origin) if upstream_origin.strip() else ""
    proxy = _proxy_settings(
        access_mode=access_mode if access_mode is not None else tool.access_mode,
        upstream_origin=origin,
        inject_as=inject_as if inject_as is not None else tool.inject_as,
        inject_name=inject_name if inject_name is not None else tool.inject_name,
        inject_template=inject_template if inject_template is not None else tool.inject_template,
    )
    return {k: v for k, v in proxy.items() if v != getattr(tool, k)}


def _check_required_approvals(required: int) -> None:
    if not 1 <= required <= MAX_REQUIRED_APPROVALS:
        msg = APPROVALS_OUT_OF_RANGE.format(most=MAX_REQUIRED_APPROVALS)
        raise ValidationFailed(msg, details=[FieldError("required_approvals", msg.error)])


def _approval_changes(
    tool: Tool, required_approvals: int | None, separation_of_duties: bool | None
) -> dict[str, object]:
    changed: dict[str, object] = {}
    if required_approvals is not None and required_approvals != tool.required_approvals:
        _check_required_approvals(required_approvals)
        changed["required_approvals"] = required_approvals
    if separation_of_duties is not None and separation_of_duties != tool.separation_of_duties:
        changed["separation_of_duties"] = separation_of_duties
    return changed


def tool_update(
    *,
    tool: Tool,
    actor: HumanActor,
    name: str | None = None,
    description: str | None = None,
    url: str | None = None,
    auth_type: str | None = None,
    credential_mode: str | None = None,
    credential_expires_at: datetime | Keep | None = KEEP,
    access_mode: str | None = None,
    upstream_origin: str | None = None,
    inject_as: str | None = None,
    inject_name: str | None = None,
    inject_template: str | None = None,
    required_approvals: int | None = None,
    separation_of_duties: bool | None = None,
    is_canary: bool | None = None,
) -> Tool:
    """Change a tool's description, proxy and approval fields (None: unchanged).

    ``credential_expires_at=None`` clears the expiry. An upstream origin is
    SSRF-checked only when it changes.
    """
    require(actor, Capability.MANAGE_TOOLS, tool.org_id)
    if credential_mode is not None and credential_mode != tool.credential_mode:
        raise ValidationFailed(MODE_IS_FIXED, details=[FieldError("credential_mode", MODE_IS_FIXED.error)])
    changed: dict[str, object] = {}
    if name is not None and " ".join(name.split()) != tool.name:
        clean = " ".join(name.split())
        normalized = normalize_name(clean)
        if not clean or len(clean) > 120 or not normalized:
            raise ValidationFailed(
                Message("A tool needs a name.", "Give a name of 1 to 120 characters."),
                details=[FieldError("name", "Give a name of 1 to 120 characters.")],
            )
        changed.update(name=clean, normalized_name=normalized)
    if url is not None:
        _, clean_url, domain = _identity(tool.name, url)
        if clean_url != tool.url:
            changed.update(url=clean_url, normalized_domain=domain)
    if description is not None and description.strip() != tool.description:
        changed["description"] = description.strip()
    if auth_type is not None and auth_type != tool.auth_type:
        changed["auth_type"] = auth_type
    if credential_expires_at is not KEEP and credential_expires_at != tool.credential_expires_at:
        changed["credential_expires_at"] = credential_expires_at
    changed.update(_approval_changes(tool, required_approvals, separation_of_duties))
    changed.update({"is_canary": is_canary} if is_canary not in (None, tool.is_canary) else {})
    changed.update(
        proxy_changes(
            tool,
            access_mode=access_mode,
            upstream_origin=upstream_origin,
            inject_as=inject_as,
            inject_name=inject_name,
            inject_template=inject_template,
        )
    )
    if not changed:
        return tool
    with transaction.atomic():
        if "normalized_name" in changed:
            _lock_catalog(tool.org_id)
            taken = Tool.objects.filter(org_id=tool.org_id, normalized_name=changed["normalized_name"])
            if taken.exclude(pk=tool.pk).exists():
                raise Conflict(TOOL_NAME_TAKEN.format(name=changed["name"]))
        for attr, value in changed.items():
            setattr(tool, attr, value)
        tool.save(update_fields=[*changed.keys(), "updated_at"])
        audit_record(
            action=Action.TOOL_UPDATED,
            actor=actor,
            target=tool,
            metadata={
                "fields": sorted(k for k in changed if not k.startswith("normalized")),
                **{
                    k: changed[k]
                    for k in (
                        "access_mode",
                        "upstream_origin",
                        "required_approvals",
                        "separation_of_duties",
                        "is_canary",
                    )
                    if k in changed
                },
            },
        )
    return tool


def tool_rotate_credential(
    *, tool: Tool, actor: HumanActor, credential: str, expires_at: datetime | Keep | None = KEEP
) -> Tool:
    """Replace a shared tool's credential. The very next vend returns the new value.

    The recorded credential expiry is kept unless ``expires_at`` is given (None clears it).
    """
    require(actor, Capability.MANAGE_TOOLS, tool.org_id)
    if tool.credential_mode != CredentialMode.SHARED:
        raise ValidationFailed(NOT_SHARED, details=[FieldError("credential", NOT_SHARED.error)])
    with transaction.atomic():
        locked = Tool.objects.select_for_update(of=("self",)).select_related("secret").get(pk=tool.pk)
        first = locked.secret is None
        if locked.secret is None:
            locked.secret = secret_create(plaintext=credential)
        else:
            secret_replace(secret=locked.secret, plaintext=credential)
        locked.credential_rotated_at = timezone.now()
        if expires_at is not KEEP:
            locked.credential_expires_at = expires_at
        locked.save(update_fields=["secret", "credential_rotated_at", "credential_expires_at", "updated_at"])
        audit_record(
            action=Action.TOOL_CREDENTIAL_ROTATED, actor=actor, target=locked, metadata={"first": first}
        )
    return locked


def tool_guide_update(
    *,
    tool: Tool,
    actor: HumanActor,
    content: str,
    expected_version: int | None = None,
    restored_from: int | None = None,
) -> GuideVersion:
    """Append a new usage-guide version and make it current.

    With ``expected_version`` (the version the editor started from), a guide
    that changed meanwhile is a Conflict instead of a silently lost edit.
    """
    require(actor, Capability.MANAGE_TOOLS, tool.org_id)
    if len(content) > 20000:
        raise ValidationFailed(GUIDE_TOO_LONG, details=[FieldError("usage_guide", GUIDE_TOO_LONG.error)])
    with transaction.atomic():
        locked = Tool.objects.select_for_update().get(pk=tool.pk)
        if expected_version is not None and locked.current_guide_version != expected_version:
            raise Conflict(GUIDE_CHANGED.format(current=locked.current_guide_version))
        version = GuideVersion.objects.create(
            tool=locked,
            version=locked.current_guide_version + 1,
            content=content,
            created_by_label=actor.audit_actor().label,
        )
        locked.usage_guide = content
        locked.current_guide_version = version.version
        locked.save(update_fields=["usage_guide", "current_guide_version", "updated_at"])
        metadata: dict[str, int] = {"version": version.version}
        if restored_from is not None:
            metadata["restored_from"] = restored_from
        audit_record(
            action=Action.TOOL_GUIDE_UPDATED,
            actor=actor,
            target=locked,
            metadata=metadata,
        )
    tool.usage_guide, tool.current_guide_version = content, version.version
    return version


# --- tool suggestions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Suggested:
    suggestion: ToolSuggestion
    existing: bool

    @property
    def message(self) -> str:
        return SUPPORTED_MESSAGE if self.existing else SUGGESTED_MESSAGE


@dataclass(frozen=True)
class _Wanted:
    """What an agent suggested, normalized for matching."""

    name: str
    normalized: str
    url: str
    domain: str


def tool_suggest(*, agent: Agent, name: str, url: str, reason: str) -> Suggested:
    """An agent asks for a tool the catalog lacks.

    Matches an existing tool (409 with its id), a suggestion dismissed less
    than 24 h ago (409 with retry_after), or an open suggestion (the agent
    becomes a backer); otherwise creates one. Matching is by domain or by
    normalized name. Suggestions in one organization are serialized on the
    organization row, so fifty agents suggesting at once make one suggestion.
    Refusals are audited and committed before they are raised.
    """
    normalized, clean_url, domain = _identity(name, url)
    wanted = _Wanted(" ".join(name.split()), normalized, clean_url, domain)
    match = _matching(normalized, domain)
    with transaction.atomic():
        _lock_catalog(agent.org_id)
        tool = Tool.objects.filter(match, org_id=agent.org_id).order_by("-created_at").first()
        candidate = None if tool else _open_candidate(agent, wanted, match)
        refusal = _refusal(agent, wanted, tool, candidate)
        result = None if refusal else _back(agent, wanted, candidate, reason)
    if refusal is not None:
        raise refusal
    assert result is not None  # noqa: S101
    return result


def _open_candidate(agent: Agent, wanted: _Wanted, match: Q) -> ToolSuggestion | None:
    """The suggestion this one merges into: a domain match first, then the most recently active."""
    # Locked: a dismissal committing meanwhile must not be overwritten by the merge.
    candidates = list(
        ToolSuggestion.objects.select_for_update()
        .filter(match, org_id=agent.org_id)
        .exclude(status=SuggestionStatus.ACCEPTED)
        .order_by("-updated_at")[:10]
    )
    candidates.sort(key=lambda s: not (wanted.domain and s.normalized_domain == wanted.domain))
    return candidates[0] if candidates else None


def _refusal(
    agent: Agent, wanted: _Wanted, tool: Tool | None, candidate: ToolSuggestion | None
) -> Conflict | None:
    if tool is not None:
        audit_record(
            action=Action.TOOL_SUGGESTION_REDIRECTED,
            actor=agent,
            target=tool,
            metadata={"suggested_name": wanted.name, "suggested_url": wanted.url},
        )
        return Conflict(
            TOOL_EXISTS.format(tool_id=tool.id),
            tool_id=str(tool.id),
            tool_name=tool.name,
            message=TOOL_EXISTS_MESSAGE,
        )
    if (
        candidate is not None
        and candidate.status == SuggestionStatus.DISMISSED
        and candidate.dismissed_until is not None
        and candidate.dismissed_until > timezone.now()
    ):
        audit_record(action=Action.TOOL_SUGGESTION_COOLDOWN, actor=agent, target=candidate)
        return Conflict(
            SUGGESTION_COOLING_DOWN,
            suggestion_id=str(candidate.id),
            retry_after=isoformat(candidate.dismissed_until),
        )
    return None


def _back(agent: Agent, wanted: _Wanted, candidate: ToolSuggestion | None, reason: str) -> Suggested:
    """Add the agent as a backer of ``candidate`` (reviving it after a cooldown), or create a suggestion.

    A later backer never overwrites the name or URL the first one gave; it only
    fills in a URL that was missing.
    """
    if candidate is None:
        suggestion = ToolSuggestion.objects.create(
            org_id=agent.org_id,
            name=wanted.name,
            normalized_name=wanted.normalized,
            url=wanted.url,
            normalized_domain=wanted.domain,
        )
        existing = False
    else:
        suggestion = candidate
        existing = candidate.status == SuggestionStatus.PENDING
        suggestion.status = SuggestionStatus.PENDING
        suggestion.dismissed_until = None
        suggestion.dismissal_reason = ""
        if not suggestion.url and wanted.url:
            suggestion.url, suggestion.normalized_domain = wanted.url, wanted.domain
        suggestion.save(
            update_fields=[
                "status",
                "dismissed_until",
                "dismissal_reason",
                "url",
                "normalized_domain",
                "updated_at",
            ]
        )
    SuggestionBacker.objects.update_or_create(
        suggestion=suggestion, agent=agent, defaults={"latest_reason": reason}
    )
    audit_record(
        action=Action.TOOL_SUGGESTION_SUPPORTED if existing else Action.TOOL_SUGGESTION_CREATED,
        actor=agent,
        target=suggestion,
        metadata={"reason": reason},
    )
    if not existing:  # a new suggestion, not each extra backer
        notify(
            org_id=agent.org_id,
            event=Event.TOOL_SUGGESTED,
            subject={"agent": agent.name, "tool": suggestion.name, "url": suggestion.url, "reason": reason},
            link=console_link("inbox", anchor=f"tool-suggestion-{suggestion.id}"),
        )
    return Suggested(suggestion, existing)


def tool_suggestion_dismiss(
    *, suggestion: ToolSuggestion, actor: HumanActor, reason: str = ""
) -> ToolSuggestion:
    require(actor, Capability.MANAGE_TOOLS, suggestion.org_id)
    now = timezone.now()
    with transaction.atomic():
        updated = ToolSuggestion.objects.filter(pk=suggestion.pk, status=SuggestionStatus.PENDING).update(
            status=SuggestionStatus.DISMISSED,
            dismissed_until=now + SUGGESTION_COOLDOWN,
            dismissal_reason=reason.strip()[:500],
            decided_by=acting_user(actor),
            decided_at=now,
            updated_at=now,
        )
        if not updated:
            raise Conflict(SUGGESTION_NOT_PENDING)
        audit_record(
            action=Action.TOOL_SUGGESTION_DISMISSED,
            actor=actor,
            target=suggestion,
            metadata={"reason": reason},
        )
    suggestion.refresh_from_db()
    return suggestion


# --- usage-guide suggestions -----------------------------------------------------------------------


@dataclass(frozen=True)
class GuideSuggested:
    suggestion: GuideSuggestion
    existing: bool

    @property
    def message(self) -> str:
        return GUIDE_SUPPORTED_MESSAGE if self.existing else GUIDE_SUGGESTED_MESSAGE


def guide_suggest(*, agent: Agent, tool: Tool, learned: str, why: str) -> GuideSuggested:
    """Record an agent's proposed guide improvement (deduplicated per guide version).

    The caller checks that the agent has an approved grant for the tool
    (``grants.services.guide_suggest_as_agent``).
    """
    learned = learned.strip()
    # Text without ASCII letters or digits (CJK, say) is compared by its lowercase words.
    normalized = normalize_text(learned) or " ".join(learned.lower().split())
    digest = hashlib.sha256(normalized.encode("utf-8", "surrogatepass")).hexdigest()
    refusal: Conflict | None = None
    result: GuideSuggested | None = None
    with transaction.atomic():
        current = (
            Tool.objects.select_for_update().values_list("current_guide_version", flat=True).get(pk=tool.pk)
        )
        suggestion = GuideSuggestion.objects.filter(
            tool=tool, base_version=current, learned_digest=digest
        ).first()
        if suggestion is not None and suggestion.status == SuggestionStatus.DISMISSED:
            refusal = Conflict(
                GUIDE_SUGGESTION_DISMISSED,
                suggestion_id=str(suggestion.id),
                dismissal_reason=suggestion.dismissal_reason or None,
                message=GUIDE_DISMISSED_MESSAGE,
            )
        else:
            existing = suggestion is not None
            if suggestion is None:
                suggestion = GuideSuggestion.objects.create(
                    org_id=tool.org_id,
                    tool=tool,
                    base_version=current,
                    learned=learned,
                    normalized_learned=normalized,
                    learned_digest=digest,
                )
            GuideSuggestionBacker.objects.update_or_create(
                suggestion=suggestion, agent=agent, defaults={"latest_why": why.strip()}
            )
            audit_record(
                action=Action.GUIDE_SUGGESTION_SUPPORTED if existing else Action.GUIDE_SUGGESTION_CREATED,
                actor=agent,
                target=suggestion,
                metadata={"tool_id": str(tool.id), "base_version": current},
            )
            if not existing:
                notify(
                    org_id=tool.org_id,
                    event=Event.GUIDE_SUGGESTED,
                    subject={"agent": agent.name, "tool": tool.name, "learned": learned},
                    link=console_link("tool_guide", tool_id=tool.id, anchor=f"suggestion-{suggestion.id}"),
                )
            result = GuideSuggested(suggestion, existing)
    if refusal is not None:
        raise refusal
    assert result is not None  # noqa: S101
    return result


def guide_suggestion_dismiss(
    *, suggestion: GuideSuggestion, actor: HumanActor, reason: str = ""
) -> GuideSuggestion:
    require(actor, Capability.MANAGE_TOOLS, suggestion.org_id)
    with transaction.atomic():
        updated = GuideSuggestion.objects.filter(pk=suggestion.pk, status=SuggestionStatus.PENDING).update(
            status=SuggestionStatus.DISMISSED,
            dismissal_reason=reason.strip()[:500],
            decided_by=acting_user(actor),
            decided_at=timezone.now(),
        )
        if not updated:
            raise Conflict(SUGGESTION_NOT_PENDING)
        audit_record(action=Action.GUIDE_SUGGESTION_DISMISSED, actor=actor, target=suggestion)
    suggestion.refresh_from_db()
    return suggestion


def guide_suggestion_accept(
    *, suggestion: GuideSuggestion, actor: HumanActor, content: str, expected_version: int | None = None
) -> GuideVersion:
    """Accept a suggestion by publishing ``content`` as the next guide version."""
    require(actor, Capability.MANAGE_TOOLS, suggestion.org_id)
    with transaction.atomic():
        updated = GuideSuggestion.objects.filter(pk=suggestion.pk, status=SuggestionStatus.PENDING).update(
            status=SuggestionStatus.ACCEPTED, decided_by=acting_user(actor), decided_at=timezone.now()
        )
        if not updated:
            raise Conflict(SUGGESTION_NOT_PENDING)
        version = tool_guide_update(
            tool=suggestion.tool, actor=actor, content=content, expected_version=expected_version
        )
        audit_record(
            action=Action.GUIDE_SUGGESTION_ACCEPTED,
            actor=actor,
            target=suggestion,
            metadata={"version": version.version},
        )
    suggestion.refresh_from_db()
    return version
