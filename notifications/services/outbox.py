"""The delivery outbox: writing rows with the event, sending them, retrying, sweeping.

``notify`` is what the domain services call, inside their own transaction: it
writes one ``Delivery`` per channel and email recipient that wants the event and
hands the rows over after commit (``notifications.dispatch``), so nothing an
agent does waits on a webhook. ``delivery_attempt`` is the task's body: claim
the row atomically, send, record the outcome, say when to try again.
"""

from __future__ import annotations

import logging
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from accounts.permissions import Capability, HumanActor, require
from agentkey.core.errors import Conflict, CryptoError, Message, NotFound
from audit.models import Action
from audit.services import audit_record
from notifications import dispatch
from notifications.messages import Notice
from notifications.models import (
    CLAIMABLE,
    ChannelKind,
    Delivery,
    DeliveryChannel,
    DeliveryStatus,
    Event,
    WebhookEndpoint,
)
from notifications.services.email import email_recipients, email_settings_for
from notifications.services.endpoints import ENDPOINT_GONE
from notifications.transports import TRANSPORTS, DeliveryError, Outgoing, Transport, scrub
from vault.services import secret_reveal

logger = logging.getLogger(__name__)

#: Waits after the 1st, 2nd, … failed attempt (±20 % jitter): 9 attempts over about 23 hours.
BACKOFF_SECONDS = (30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600)
MAX_ATTEMPTS = len(BACKOFF_SECONDS) + 1
JITTER = 0.2

SUBJECT_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
SUBJECT_MAX_KEYS = 16
SUBJECT_VALUE_LIMIT = 2000  # stored; each channel shows at most 300 characters of a label
RESERVED_KEYS = frozenset({"link", "organization"})
# Characters left as they are in a deep link; anything else (spaces, quotes, <>|()[]) is
# percent-encoded, so the link cannot close the markup of a Slack or Discord message.
LINK_SAFE = ":/?#@!$&'*+,;=%~-._"

PAUSED = "The channel is paused; the message was not sent."
CHANNEL_REMOVED = "The channel was removed."
NOT_A_DECIDER = "The recipient can no longer act on this event, so the email was not sent."
UNDECRYPTABLE = "The channel's URL could not be decrypted (a master key problem): tell your operator."
UNEXPECTED = "Sending failed unexpectedly ({kind}); trying again later."
WORKER_STOPPED = "The worker stopped while sending (attempt {attempts}); trying again."
GAVE_UP = " Gave up after {attempts} attempts."

DELIVERY_GONE = Message("This delivery no longer exists.", "Refresh the page.")
NOT_DEAD = Message(
    "Only deliveries that gave up can be retried; this one is {status}.",
    "Refresh the page: it is still being retried automatically, or it was sent.",
)


def _backoff(attempts: int) -> float:
    base = BACKOFF_SECONDS[min(attempts, len(BACKOFF_SECONDS)) - 1]
    return base * secrets.SystemRandom().uniform(1 - JITTER, 1 + JITTER)


# --- writing ---------------------------------------------------------------------------------------


def _clean_subject(subject: Mapping[str, str]) -> dict[str, str]:
    """Labels only: short keys, string values (a model or a secret has no place here)."""
    if not isinstance(subject, Mapping):
        raise TypeError("notify(subject=...) takes a dict of labels")
    clean: dict[str, str] = {}
    for key, value in subject.items():
        if not isinstance(key, str) or not SUBJECT_KEY.match(key) or key in RESERVED_KEYS:
            raise ValueError(f"notify(subject=...): {key!r} is not an allowed label name")
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise TypeError(f"notify(subject=...): the label {key!r} must be a string")
        clean[key] = value[:SUBJECT_VALUE_LIMIT]
    if len(clean) > SUBJECT_MAX_KEYS:
        raise ValueError(f"notify(subject=...) takes at most {SUBJECT_MAX_KEYS} labels")
    return clean


def _clean_link(link: str) -> str:
    """An absolute http(s) link, percent-encoded so it cannot break out of any markup."""
    parts = urlsplit(str(link).strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return settings.AGENTKEY_PUBLIC_URL + "/"
    return quote(str(link).strip(), safe=LINK_SAFE)


def _new(
    *,
    org_id: uuid.UUID,
    channel: str,
    event: str,
    payload: dict[str, object],
    now: datetime,
    endpoint: WebhookEndpoint | None = None,
    recipient: str = "",
) -> Delivery:
    delivery = Delivery(
        org_id=org_id,
        endpoint=endpoint,
        recipient=recipient,
        channel=channel,
        event=event,
        payload=payload,
        status=DeliveryStatus.PENDING,
        next_attempt_at=now,
        created_at=now,
    )
    delivery.message_id = f"msg_{delivery.id.hex}"
    return delivery


def notify(*, org_id: uuid.UUID, event: Event, subject: dict[str, str], link: str) -> list[Delivery]:
    """Record that ``event`` happened in ``org_id``: one delivery per enabled channel subscribed
    to it, and one per email recipient when email is on for it. Call inside the transaction
    of the change; the rows are handed over for sending after it commits.

    ``subject`` is a flat dict of labels (never models, never secrets); the messages use
    ``agent``, ``tool``, ``reason``, ``duration``, ``requested_by``, ``decided_by`` (and show any
    other label as a field). ``link`` is the absolute deep link to the dashboard item.
    """
    event = Event(event)
    payload: dict[str, object] = {"subject": _clean_subject(subject), "link": _clean_link(link)}
    now = timezone.now()
    rows = [
        _new(org_id=org_id, endpoint=endpoint, channel=endpoint.kind, event=event, payload=payload, now=now)
        for endpoint in WebhookEndpoint.objects.filter(org_id=org_id, enabled=True)
        .only("id", "kind", "events")
        .order_by("id")
        if event in endpoint.events
    ]
    email = email_settings_for(org_id)
    if email.enabled and event in email.events:
        rows += [
            _new(
                org_id=org_id,
                recipient=address,
                channel=DeliveryChannel.EMAIL,
                event=event,
                payload=payload,
                now=now,
            )
            for address in email_recipients(org_id=org_id, event=event)
        ]
    if rows:
        Delivery.objects.bulk_create(rows)
        dispatch.after_commit(row.id for row in rows)
    return rows


def _actor_label(actor: HumanActor) -> str:
    return actor.audit_actor().label


def delivery_send_test(*, endpoint: WebhookEndpoint, actor: HumanActor) -> Delivery:
    """Queue a test message to one channel (paused or not), from the "Send test notification" button."""
    require(actor, Capability.MANAGE_TOOLS, endpoint.org_id)
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
        if locked is None:
            raise NotFound(ENDPOINT_GONE)
        delivery = _new(
            org_id=locked.org_id,
            endpoint=locked,
            channel=locked.kind,
            event=Event.TEST,
            payload={
                "subject": {"channel": locked.name, "requested_by": _actor_label(actor)},
                "link": settings.AGENTKEY_PUBLIC_URL + reverse("console:notifications"),
            },
            now=timezone.now(),
        )
        delivery.save(force_insert=True)
        audit_record(
            action=Action.NOTIFICATION_TEST_SENT,
            actor=actor,
            target=locked,
            metadata={"delivery_id": str(delivery.id)},
        )
        dispatch.after_commit([delivery.id])
    return delivery


def delivery_retry(*, delivery: Delivery, actor: HumanActor) -> Delivery:
    """Start a fresh series of attempts for a delivery that gave up."""
    require(actor, Capability.MANAGE_TOOLS, delivery.org_id)
    with transaction.atomic():
        locked = Delivery.objects.select_for_update().filter(pk=delivery.pk).first()
        if locked is None:
            raise NotFound(DELIVERY_GONE)
        if locked.status != DeliveryStatus.DEAD:
            raise Conflict(NOT_DEAD.format(status=locked.get_status_display().lower()))
        previous = locked.attempts
        locked.status = DeliveryStatus.PENDING
        locked.attempts = 0
        locked.next_attempt_at = timezone.now()
        locked.claimed_at = locked.requeued_at = None
        locked.save(update_fields=["status", "attempts", "next_attempt_at", "claimed_at", "requeued_at"])
        audit_record(
            action=Action.NOTIFICATION_DELIVERY_RETRIED,
            actor=actor,
            target=locked,
            metadata={
                "channel": locked.channel,
                "event": locked.event,
                "endpoint_id": str(locked.endpoint_id or ""),
                "previous_attempts": previous,
            },
        )
        dispatch.after_commit([locked.id])
    return locked


# --- sending ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """What one run of the task did: ``skipped`` (not claimable), sent, failed (with
    ``retry_in`` seconds) or dead."""

    status: str
    retry_in: float | None = None


SKIPPED = Attempt("skipped")


def _prepare(delivery: Delivery) -> tuple[Transport, Outgoing]:
    notice = Notice.from_payload(event=delivery.event, org=delivery.org.name, payload=delivery.payload)
    if delivery.channel == DeliveryChannel.EMAIL:
        # Re-checked now: someone removed from the organization since gets nothing.
        if delivery.recipient not in email_recipients(org_id=delivery.org_id, event=delivery.event):
            raise DeliveryError(NOT_A_DECIDER, permanent=True)
        outgoing = Outgoing(
            notice=notice,
            message_id=delivery.message_id,
            created_at=delivery.created_at,
            recipient=delivery.recipient,
        )
        return TRANSPORTS[DeliveryChannel.EMAIL], outgoing
    endpoint = delivery.endpoint
    if endpoint is None:
        raise DeliveryError(CHANNEL_REMOVED, permanent=True)
    if not endpoint.enabled and delivery.event != Event.TEST:
        raise DeliveryError(PAUSED, permanent=True)
    try:
        url = secret_reveal(secret=endpoint.url_secret)
        signing = secret_reveal(secret=endpoint.signing_secret) if endpoint.signing_secret else ""
    except CryptoError:
        raise DeliveryError(UNDECRYPTABLE, permanent=False) from None
    outgoing = Outgoing(
        notice=notice,
        message_id=delivery.message_id,
        created_at=delivery.created_at,
        url=url,
        signing_secret=signing,
    )
    # The channel's kind now, not when the row was written: an edit may have changed it.
    return TRANSPORTS[ChannelKind(endpoint.kind)], outgoing


def delivery_attempt(*, delivery_id: uuid.UUID) -> Attempt:
    """Claim the delivery (only one worker can), send it, record the outcome.

    Runs in autocommit: the claim is its own committed UPDATE, and no transaction is
    open while the network is used.
    """
    claimed = Delivery.objects.filter(
        id=delivery_id, status__in=CLAIMABLE, next_attempt_at__lte=timezone.now()
    ).update(status=DeliveryStatus.SENDING, claimed_at=timezone.now(), attempts=F("attempts") + 1)
    if claimed != 1:
        return SKIPPED
    delivery = (
        Delivery.objects.select_related("org", "endpoint", "endpoint__url_secret", "endpoint__signing_secret")
        .filter(id=delivery_id)
        .first()
    )
    if delivery is None:
        return SKIPPED
    url = ""
    try:
        transport, outgoing = _prepare(delivery)
        url = outgoing.url
        sent = transport.send(outgoing)
    except DeliveryError as exc:
        return _failed(delivery, exc)
    except Exception as exc:  # noqa: BLE001 (a bug must not leave the row in "sending")
        logger.error("Notification delivery %s failed unexpectedly: %s", delivery.id, scrub(f"{exc!r}", url))
        return _failed(delivery, DeliveryError(UNEXPECTED.format(kind=type(exc).__name__), permanent=False))
    Delivery.objects.filter(id=delivery.id, status=DeliveryStatus.SENDING).update(
        status=DeliveryStatus.SENT,
        sent_at=timezone.now(),
        next_attempt_at=None,
        claimed_at=None,
        last_error="",
        last_status_code=sent.status_code,
    )
    logger.info(
        "Notification delivery %s sent (%s, attempt %s).", delivery.id, delivery.channel, delivery.attempts
    )
    return Attempt(DeliveryStatus.SENT)


def _failed(delivery: Delivery, error: DeliveryError) -> Attempt:
    attempts = delivery.attempts
    reason = scrub(error.reason)
    give_up = error.permanent or attempts >= MAX_ATTEMPTS
    retry_in = None
    if give_up:
        status, next_at = DeliveryStatus.DEAD, None
        if not error.permanent:
            reason = scrub(reason + GAVE_UP.format(attempts=attempts))
    else:
        retry_in = max(_backoff(attempts), error.retry_after or 0.0)
        status, next_at = DeliveryStatus.FAILED, timezone.now() + timedelta(seconds=retry_in)
    recorded = Delivery.objects.filter(id=delivery.id, status=DeliveryStatus.SENDING).update(
        status=status,
        next_attempt_at=next_at,
        claimed_at=None,
        last_error=reason,
        last_status_code=error.status_code,
    )
    logger.info(
        "Notification delivery %s %s (%s, attempt %s): %s",
        delivery.id,
        status,
        delivery.channel,
        attempts,
        reason,
    )
    if not recorded:  # the sweep job reset it meanwhile: it owns the row now
        return SKIPPED
    return Attempt(status, retry_in)


# --- the sweep job ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Swept:
    requeue: list[uuid.UUID] = field(default_factory=list)
    reset: int = 0
    gave_up: int = 0
    pruned: int = 0


def deliveries_sweep(*, now: datetime | None = None, batch_size: int = 500) -> Swept:
    """Find deliveries whose task was lost and say which to queue again.

    - ``sending`` for longer than ``AGENTKEY_NOTIFICATIONS_STUCK_AFTER`` seconds: the worker
      died mid-send. Reset to ``failed`` (the attempt counts) and queue again, or dead when
      it was the last attempt.
    - pending or failed and due for longer than ``AGENTKEY_NOTIFICATIONS_REDELIVER_AFTER``
      seconds: the publish failed (broker down) or the queued task vanished. Queue again,
      at most once per ``AGENTKEY_NOTIFICATIONS_REQUEUE_AFTER`` seconds, so a busy worker
      does not get the same row over and over.
    - sent or dead rows older than ``AGENTKEY_NOTIFICATIONS_KEEP_DAYS`` days are deleted
      (the audit log keeps the history that matters).

    A row queued twice is harmless: the task claims it atomically.
    """
    now = now or timezone.now()
    stuck = Delivery.objects.filter(
        status=DeliveryStatus.SENDING,
        claimed_at__lte=now - timedelta(seconds=settings.AGENTKEY_NOTIFICATIONS_STUCK_AFTER),
    )
    gave_up = 0
    for attempts in stuck.filter(attempts__gte=MAX_ATTEMPTS).values_list("attempts", flat=True).distinct():
        gave_up += stuck.filter(attempts=attempts).update(
            status=DeliveryStatus.DEAD,
            next_attempt_at=None,
            claimed_at=None,
            last_error=scrub(WORKER_STOPPED.format(attempts=attempts) + GAVE_UP.format(attempts=attempts)),
        )
    reset_ids = list(stuck.filter(attempts__lt=MAX_ATTEMPTS).values_list("id", flat=True)[:batch_size])
    for delivery in Delivery.objects.filter(id__in=reset_ids).only("id", "attempts"):
        Delivery.objects.filter(id=delivery.id, status=DeliveryStatus.SENDING).update(
            status=DeliveryStatus.FAILED,
            next_attempt_at=now,
            claimed_at=None,
            last_error=WORKER_STOPPED.format(attempts=delivery.attempts),
        )
    due = (
        Delivery.objects.filter(
            status__in=CLAIMABLE,
            next_attempt_at__lte=now - timedelta(seconds=settings.AGENTKEY_NOTIFICATIONS_REDELIVER_AFTER),
        )
        .filter(
            Q(requeued_at__isnull=True)
            | Q(requeued_at__lte=now - timedelta(seconds=settings.AGENTKEY_NOTIFICATIONS_REQUEUE_AFTER))
        )
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:batch_size]
    )
    requeue = list(dict.fromkeys([*reset_ids, *due]))
    if requeue:
        Delivery.objects.filter(id__in=requeue).update(requeued_at=now)
    keep = now - timedelta(days=settings.AGENTKEY_NOTIFICATIONS_KEEP_DAYS)
    old = Delivery.objects.filter(
        status__in=[DeliveryStatus.SENT, DeliveryStatus.DEAD], created_at__lt=keep
    ).values_list("id", flat=True)[:batch_size]
    pruned, _ = Delivery.objects.filter(id__in=list(old)).delete()
    return Swept(requeue=requeue, reset=len(reset_ids), gave_up=gave_up, pruned=pruned)
