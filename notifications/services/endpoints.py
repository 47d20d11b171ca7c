"""State changes for notification channels (webhook endpoints).

A webhook URL is a credential: whoever holds it can post into the channel. It is
stored in the vault (``url_secret``) and only a masked ``url_hint`` is ever shown.
Error messages here are constants and never contain the URL.

Slack and Discord URLs must be on those services' hosts. A generic URL is
resolved when it is saved and refused if any address it resolves to is private,
loopback, link-local or a cloud metadata address (``agentkey.core.http``); a host
that does not resolve right now is accepted, because every delivery checks the
URL again anyway, after DNS resolution and on every redirect hop. With
``AGENTKEY_ALLOW_LOOPBACK_URLS`` (tests, local development) a plain-HTTP URL on a
loopback address is accepted for every kind, so a local receiver can stand in.

A generic endpoint signs its requests (Standard Webhooks) with a secret kept in
the vault; the console shows it once, when it is issued or rotated.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction

from accounts.models import Organization
from accounts.permissions import Capability, HumanActor, acting_user, require
from agentkey.core.errors import Conflict, FieldError, Message, NotFound, ValidationFailed
from agentkey.core.http import BAD_URL, UNRESOLVABLE, UnsafeURL, check_url
from audit.models import Action
from audit.services import audit_record
from notifications.models import SUBSCRIBABLE_EVENTS, ChannelKind, WebhookEndpoint
from notifications.signing import new_signing_secret, secret_bytes
from vault.models import Secret
from vault.services import secret_create, secret_delete, secret_replace

NAME_MAX = 100
URL_MAX = 2000
#: The tail of the URL shown in the hint, and how long the path must be before any of it is shown.
HINT_TAIL = 4
HINT_MIN_SECRET_PART = 16
HINT_MAX = 120

NAME_INVALID = Message(
    "A notification channel needs a name.",
    "Give a name of 1 to 100 characters, such as #agent-requests.",
)
NAME_TAKEN = Message(
    "A notification channel named {name!r} already exists.",
    "Choose a different name, or edit the existing channel.",
)
KIND_INVALID = Message(
    "Unknown channel kind.",
    "Choose Slack, Discord or a generic JSON webhook.",
)
URL_REQUIRED = Message(
    "Enter the webhook URL.", "Paste the URL the channel gave you, starting with https://."
)
URL_INVALID = Message(
    "The webhook URL is not a valid URL.",
    "Paste the whole URL, starting with https:// and without spaces.",
)
URL_NOT_HTTPS = Message(
    "The webhook URL must start with https://.",
    "Webhook URLs carry a secret; they are only sent over TLS. Use the https:// URL.",
)
URL_TOO_LONG = Message(
    "The webhook URL is longer than 2,000 characters.", "Check that you pasted only the URL."
)
URL_NOT_SLACK = Message(
    "This is not a Slack incoming-webhook URL.",
    "Slack webhook URLs look like https://hooks.slack.com/services/T…/B…/…; "
    "or choose the generic kind for another service.",
)
URL_NOT_DISCORD = Message(
    "This is not a Discord webhook URL.",
    "Discord webhook URLs look like https://discord.com/api/webhooks/…/…; "
    "or choose the generic kind for another service.",
)
URL_NEEDED_FOR_KIND = Message(
    "Changing the kind of a channel needs its new URL.",
    "Paste the webhook URL of the new kind of channel too.",
)
EVENTS_EMPTY = Message(
    "Choose at least one event.",
    "Pick the events this channel should hear about, such as new access requests.",
)
EVENTS_INVALID = Message("Unknown event {event!r}.", "Choose events from the list.")
NOT_SIGNED = Message(
    "Only generic webhooks have a signing secret.",
    "Slack and Discord verify messages by their secret URL; rotate that URL there if it leaked.",
)
ENDPOINT_GONE = Message(
    "This notification channel no longer exists.",
    "Refresh the page: someone removed it.",
)

SLACK_HOSTS = frozenset({"hooks.slack.com"})
SLACK_PATH = "/services/"
DISCORD_HOSTS = frozenset({"discord.com", "discordapp.com"})
DISCORD_PATH = "/api/webhooks/"


def _invalid(message: Message, field: str) -> ValidationFailed:
    return ValidationFailed(message, details=[FieldError(field, message.error)])


def _clean_name(name: str) -> str:
    clean = " ".join(name.split())
    if not clean or len(clean) > NAME_MAX:
        raise _invalid(NAME_INVALID, "name")
    return clean


def _clean_kind(kind: str) -> str:
    if kind not in ChannelKind.values:
        raise _invalid(KIND_INVALID, "kind")
    return kind


def _clean_events(events: Iterable[str]) -> list[str]:
    allowed = [str(event) for event in SUBSCRIBABLE_EVENTS]
    wanted = set()
    for event in events:
        if event not in allowed:
            raise _invalid(EVENTS_INVALID.format(event=str(event)[:40]), "events")
        wanted.add(event)
    if not wanted:
        raise _invalid(EVENTS_EMPTY, "events")
    return [value for value in allowed if value in wanted]  # a stable order


def _loopback_dev(host: str) -> bool:
    """A loopback host while AGENTKEY_ALLOW_LOOPBACK_URLS is on (tests, local development)."""
    if not getattr(settings, "AGENTKEY_ALLOW_LOOPBACK_URLS", False):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def clean_url(*, kind: str, url: str) -> str:
    """The URL as stored, or ValidationFailed. Checks its shape and, for Slack and Discord,
    the host; opens no connection (``check_reachable`` resolves generic URLs). Used again
    by the transports before every send.

    Never echoes the URL in the error: it is a secret.
    """
    url = url.strip()
    if not url:
        raise _invalid(URL_REQUIRED, "url")
    if len(url) > URL_MAX:
        raise _invalid(URL_TOO_LONG, "url")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 or ch == "\\" for ch in url):
        raise _invalid(URL_INVALID, "url")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a malformed port
    except ValueError:
        raise _invalid(URL_INVALID, "url") from None
    host = parts.hostname or ""
    local = _loopback_dev(host) and parts.scheme.lower() in ("http", "https")
    if parts.scheme.lower() != "https" and not local:
        raise _invalid(URL_NOT_HTTPS if parts.scheme else URL_INVALID, "url")
    # Two "@" (or a backslash, above) are read differently by different URL parsers: one
    # would post to the host this check saw, another to a different one.
    if not host or parts.netloc.count("@") > 1:
        raise _invalid(URL_INVALID, "url")
    plain = (port in (None, 443) or local) and parts.username is None and parts.password is None
    if kind == ChannelKind.SLACK and not (
        plain and (host in SLACK_HOSTS or local) and _has_tail(parts.path, SLACK_PATH)
    ):
        raise _invalid(URL_NOT_SLACK, "url")
    if kind == ChannelKind.DISCORD and not (
        plain and (host in DISCORD_HOSTS or local) and _has_tail(parts.path, DISCORD_PATH)
    ):
        raise _invalid(URL_NOT_DISCORD, "url")
    return url


def check_reachable(*, kind: str, url: str) -> None:
    """Refuse a generic URL whose host resolves to an internal address (SSRF), with the reason.

    DNS is asked now; a host that does not resolve is accepted (a typo or a passing DNS
    problem shows up on the first delivery, which checks again). Slack and Discord URLs
    are on allowlisted hosts and need no lookup.
    """
    if kind != ChannelKind.GENERIC:
        return
    try:
        check_url(url, https_only=True)
    except UnsafeURL as exc:
        if exc.message.hint == UNRESOLVABLE.hint:
            return
        message = exc.message
        if message.hint == BAD_URL.hint or url[:20] in message.error:
            message = URL_INVALID  # never echo the URL: it is a secret
        raise _invalid(message, "url") from None


def _has_tail(path: str, prefix: str) -> bool:
    return path.startswith(prefix) and len(path.strip("/")) > len(prefix.strip("/"))


def url_hint(url: str) -> str:
    """Scheme and host, then "/…" and the last characters: enough to recognise, useless to post with.

    The tail is shown only when the part after the host is long enough that four
    characters of it give nothing away.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    secret_part = url.split(parts.netloc, 1)[-1] if parts.netloc else url
    tail = url[-HINT_TAIL:] if len(secret_part) >= HINT_MIN_SECRET_PART else ""
    head = f"{parts.scheme.lower()}://"
    room = HINT_MAX - len(head) - len("/…") - len(tail)
    if len(host) > room:
        host = host[: room - 1] + "…"
    return f"{head}{host}/…{tail}"


def _lock(endpoint: WebhookEndpoint) -> WebhookEndpoint:
    locked = (
        WebhookEndpoint.objects.select_for_update(of=("self",))
        .select_related("org", "url_secret", "signing_secret")
        .filter(pk=endpoint.pk)
        .first()
    )
    if locked is None:
        raise NotFound(ENDPOINT_GONE)
    return locked


def _name_taken(org_id: uuid.UUID, name: str, exclude: uuid.UUID | None = None) -> bool:
    taken = WebhookEndpoint.objects.filter(org_id=org_id, name=name)
    if exclude is not None:
        taken = taken.exclude(pk=exclude)
    return taken.exists()


def endpoint_create(
    *,
    org: Organization,
    actor: HumanActor,
    name: str,
    kind: str,
    url: str,
    events: Iterable[str],
    signing_secret: str | None = None,
) -> WebhookEndpoint:
    """Add a channel. The URL goes into the vault; the row keeps a masked hint.

    A generic channel gets ``signing_secret`` (a fresh one when None): the console
    generates it so that it can show it once, on the response to this request.
    """
    require(actor, Capability.MANAGE_TOOLS, org.id)
    name = _clean_name(name)
    kind = _clean_kind(kind)
    url = clean_url(kind=kind, url=url)
    chosen = _clean_events(events)
    check_reachable(kind=kind, url=url)
    signing = _signing_secret(signing_secret) if kind == ChannelKind.GENERIC else None
    with transaction.atomic():
        if _name_taken(org.id, name):
            raise Conflict(NAME_TAKEN.format(name=name), details=[FieldError("name", "This name is taken.")])
        try:
            # A savepoint: a concurrent insert of the same name is a Conflict, not a broken transaction.
            with transaction.atomic():
                endpoint = WebhookEndpoint.objects.create(
                    org=org,
                    name=name,
                    kind=kind,
                    url_secret=secret_create(plaintext=url),
                    url_hint=url_hint(url),
                    signing_secret=secret_create(plaintext=signing) if signing else None,
                    events=chosen,
                    enabled=True,
                    created_by=acting_user(actor),
                )
        except IntegrityError:
            raise Conflict(
                NAME_TAKEN.format(name=name), details=[FieldError("name", "This name is taken.")]
            ) from None
        audit_record(
            action=Action.NOTIFICATION_ENDPOINT_CREATED,
            actor=actor,
            target=endpoint,
            metadata={"kind": kind, "events": chosen},
        )
    return endpoint


def _signing_secret(given: str | None) -> str:
    secret = given or new_signing_secret()
    secret_bytes(secret)  # a malformed value is a programming error: refuse it loudly
    return secret


def _check_name_free(locked: WebhookEndpoint, name: str) -> None:
    if _name_taken(locked.org_id, name, exclude=locked.pk):
        raise Conflict(NAME_TAKEN.format(name=name), details=[FieldError("name", "This name is taken.")])


def _switch_signing(
    locked: WebhookEndpoint, kind: str, given: str | None, changed: dict[str, object]
) -> Secret | None:
    """A channel becoming generic gets a signing secret; one leaving it loses it (returned, to be
    deleted once the row no longer points to it)."""
    if kind == ChannelKind.GENERIC and locked.signing_secret is None:
        changed["signing_secret"] = secret_create(plaintext=_signing_secret(given))
    elif kind != ChannelKind.GENERIC and locked.signing_secret is not None:
        changed["signing_secret"] = None
        return locked.signing_secret
    return None


def endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    actor: HumanActor,
    name: str | None = None,
    kind: str | None = None,
    url: str | None = None,
    events: Iterable[str] | None = None,
    signing_secret: str | None = None,
) -> WebhookEndpoint:
    """Change a channel. ``None`` (or an empty ``url``) keeps a field as it is.

    The URL is replaced only when a new one is given; changing the kind needs one,
    because the stored URL was checked against the old kind. A channel that becomes
    generic gets ``signing_secret`` (fresh when None); one that stops being generic
    loses its signing secret.
    """
    require(actor, Capability.MANAGE_TOOLS, endpoint.org_id)
    new_name = _clean_name(name) if name is not None else None
    new_kind = _clean_kind(kind) if kind is not None else None
    new_events = _clean_events(events) if events is not None else None
    new_url = url.strip() if url and url.strip() else None
    checked_kind = new_kind or endpoint.kind
    if new_url is not None:  # resolved before any row is locked
        new_url = clean_url(kind=checked_kind, url=new_url)
        check_reachable(kind=checked_kind, url=new_url)
    with transaction.atomic():
        locked = _lock(endpoint)
        changed: dict[str, object] = {}
        if new_name is not None and new_name != locked.name:
            _check_name_free(locked, new_name)
            changed["name"] = new_name
        final_kind = new_kind or locked.kind
        if final_kind != locked.kind:
            if new_url is None:
                raise _invalid(URL_NEEDED_FOR_KIND, "url")
            changed["kind"] = final_kind
        if new_url is not None:
            if final_kind != checked_kind:  # someone changed the kind meanwhile
                new_url = clean_url(kind=final_kind, url=new_url)
                check_reachable(kind=final_kind, url=new_url)
            changed["url_hint"] = url_hint(new_url)
        if new_events is not None and new_events != locked.events:
            changed["events"] = new_events
        if not changed:
            return locked
        if new_url is not None:
            secret_replace(secret=locked.url_secret, plaintext=new_url)
        dropped = _switch_signing(locked, final_kind, signing_secret, changed)
        for attr, value in changed.items():
            setattr(locked, attr, value)
        try:
            with transaction.atomic():
                locked.save(update_fields=[*changed.keys(), "updated_at"])
        except IntegrityError:
            raise Conflict(
                NAME_TAKEN.format(name=locked.name), details=[FieldError("name", "This name is taken.")]
            ) from None
        if dropped is not None:
            secret_delete(secret=dropped)
        fields = sorted("url" if key == "url_hint" else key for key in changed)
        audit_record(
            action=Action.NOTIFICATION_ENDPOINT_UPDATED,
            actor=actor,
            target=locked,
            metadata={"fields": fields},
        )
    return locked


def endpoint_set_enabled(*, endpoint: WebhookEndpoint, actor: HumanActor, enabled: bool) -> WebhookEndpoint:
    """Pause or resume a channel. Setting the state it already has changes nothing and is not audited."""
    require(actor, Capability.MANAGE_TOOLS, endpoint.org_id)
    with transaction.atomic():
        locked = _lock(endpoint)
        if locked.enabled == enabled:
            return locked
        locked.enabled = enabled
        locked.save(update_fields=["enabled", "updated_at"])
        audit_record(
            action=Action.NOTIFICATION_ENDPOINT_UPDATED,
            actor=actor,
            target=locked,
            metadata={"fields": ["enabled"], "enabled": enabled},
        )
    return locked


def endpoint_delete(*, endpoint: WebhookEndpoint, actor: HumanActor) -> None:
    """Remove a channel and destroy its stored URL."""
    require(actor, Capability.MANAGE_TOOLS, endpoint.org_id)
    with transaction.atomic():
        locked = _lock(endpoint)
        stored = [s for s in (locked.url_secret, locked.signing_secret) if s is not None]
        audit_record(
            action=Action.NOTIFICATION_ENDPOINT_DELETED,
            actor=actor,
            target=locked,
            metadata={"kind": locked.kind},
        )
        locked.delete()  # its deliveries go with it: without the URL they cannot be sent
        for secret in stored:
            secret_delete(secret=secret)


def endpoint_signing_secret_rotate(
    *, endpoint: WebhookEndpoint, actor: HumanActor, signing_secret: str | None = None
) -> str:
    """Replace a generic channel's signing secret; return the new one (the console shows it once).

    The old secret stops working at once: the receiver must be updated with the new one.
    """
    require(actor, Capability.MANAGE_TOOLS, endpoint.org_id)
    secret = _signing_secret(signing_secret)
    with transaction.atomic():
        locked = _lock(endpoint)
        if locked.kind != ChannelKind.GENERIC:
            raise _invalid(NOT_SIGNED, "kind")
        if locked.signing_secret is None:
            locked.signing_secret = secret_create(plaintext=secret)
            locked.save(update_fields=["signing_secret", "updated_at"])
        else:
            secret_replace(secret=locked.signing_secret, plaintext=secret)
        audit_record(action=Action.NOTIFICATION_SIGNING_SECRET_ROTATED, actor=actor, target=locked)
    return secret
