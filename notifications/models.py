"""Notification channels, the organization's email setting, and the delivery outbox.

A delivery row is written in the same transaction as the event it reports (the
outbox); a Celery task sends it after commit. Rows carry labels only (names,
the agent's reason, a deep link), never models or secrets: the message each
channel receives is rendered from them at send time.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization, User
from agentkey.core.ids import uuid7
from audit.services import AuditRef
from vault.models import Secret


class ChannelKind(models.TextChoices):
    SLACK = "slack", "Slack incoming webhook"
    DISCORD = "discord", "Discord webhook"
    GENERIC = "generic", "Generic JSON webhook (signed)"


class Event(models.TextChoices):
    ACCESS_REQUESTED = "access.requested", "New access request"
    TOOL_SUGGESTED = "tool.suggested", "New tool suggestion"
    GUIDE_SUGGESTED = "guide.suggested", "New usage-guide suggestion"
    ACCESS_APPROVED = "access.approved", "Access approved"
    ACCESS_DENIED = "access.denied", "Access denied"
    ACCESS_REVOKED = "access.revoked", "Access revoked"
    ACCESS_APPROVAL_RECORDED = "access.approval_recorded", "Approval recorded (quorum not yet reached)"
    ACCESS_QUORUM_EXPIRED = "access.quorum_expired", "Approvals expired before the quorum"
    AGENT_OWNER_DEPARTED = "agent.owner_departed", "An agent's owner left (agent suspended or reassigned)"
    AGENT_VALIDITY_ENDED = "agent.validity_ended", "An agent's validity ended (agent suspended)"
    ACCESS_REVIEW_DUE = "access.review_due", "Access due for review"
    ACCESS_REVIEW_EXPIRED = "access.review_expired", "Access revoked: not recertified in time"
    ALERT_RAISED = "alert.raised", "Anomaly alert (unusual agent behaviour or a canary tool)"
    #: Sent from the "Send test notification" button only; nobody subscribes to it.
    TEST = "notification.test", "Test notification"


DEFAULT_EVENTS = [
    Event.ACCESS_REQUESTED,
    Event.TOOL_SUGGESTED,
    Event.GUIDE_SUGGESTED,
    Event.AGENT_OWNER_DEPARTED,
    Event.AGENT_VALIDITY_ENDED,
    Event.ACCESS_REVIEW_DUE,
    Event.ACCESS_REVIEW_EXPIRED,
    Event.ALERT_RAISED,
]
#: The events a channel or the email setting can choose.
SUBSCRIBABLE_EVENTS = [event for event in Event if event is not Event.TEST]
SUBSCRIBABLE_CHOICES = [(event.value, event.label) for event in SUBSCRIBABLE_EVENTS]


def _event_labels(events: list[str]) -> list[str]:
    labels = dict(Event.choices)
    return [str(labels.get(event, event)) for event in events]


class WebhookEndpoint(models.Model):
    """Where an organization's notifications go. The URL is a secret (it is the credential
    for posting into the channel), so it is kept in the vault and shown back only masked.
    A generic endpoint also has a signing secret (Standard Webhooks), shown once."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="webhook_endpoints")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    url_secret = models.OneToOneField(Secret, on_delete=models.PROTECT, related_name="+")
    url_hint = models.CharField(max_length=120, help_text="A masked form of the URL, safe to display.")
    signing_secret = models.OneToOneField(
        Secret, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    events = models.JSONField(default=list)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=ChannelKind.values), name="notifications_endpoint_kind_valid"
            ),
            models.UniqueConstraint(fields=["org", "name"], name="notifications_endpoint_name_unique"),
            models.CheckConstraint(
                condition=Q(kind=ChannelKind.GENERIC) | Q(signing_secret__isnull=True),
                name="notifications_endpoint_signing_secret_generic_only",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def event_labels(self) -> list[str]:
        """The chosen events as people read them (an unknown code is shown as is)."""
        return _event_labels(self.events)

    @property
    def is_generic(self) -> bool:
        return self.kind == ChannelKind.GENERIC

    def audit_ref(self) -> AuditRef:
        return AuditRef(type="webhook_endpoint", id=str(self.id), label=self.name, org_id=self.org_id)


def _default_events() -> list[str]:
    return [str(event) for event in DEFAULT_EVENTS]


class EmailSettings(models.Model):
    """Whether the organization's deciders get email, and for which events.

    No row means the defaults (on, for the default events): approvers hear about new
    requests without anyone setting anything up.
    """

    org = models.OneToOneField(
        Organization, primary_key=True, on_delete=models.CASCADE, related_name="notification_email"
    )
    enabled = models.BooleanField(default=True)
    events = models.JSONField(default=_default_events)
    updated_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "email notification setting"

    def __str__(self) -> str:
        return f"email notifications of {self.org_id}"

    @property
    def event_labels(self) -> list[str]:
        return _event_labels(self.events)

    def audit_ref(self) -> AuditRef:
        return AuditRef(
            type="notification_email", id=str(self.org_id), label="Email notifications", org_id=self.org_id
        )


class DeliveryChannel(models.TextChoices):
    SLACK = "slack", "Slack"
    DISCORD = "discord", "Discord"
    GENERIC = "generic", "Generic webhook"
    EMAIL = "email", "Email"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed, will retry"
    DEAD = "dead", "Gave up"


#: States the delivery task may claim a row from.
CLAIMABLE = [DeliveryStatus.PENDING, DeliveryStatus.FAILED]


class Delivery(models.Model):
    """One message to one channel or one email recipient: the outbox row."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    # Deleting a channel destroys its URL, so its deliveries cannot be sent any more: they go too.
    endpoint = models.ForeignKey(
        WebhookEndpoint,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="deliveries",
        db_index=False,  # the (endpoint, -created_at) index below serves every lookup
    )
    recipient = models.EmailField(blank=True, help_text="The address of an email delivery.")
    channel = models.CharField(max_length=16, choices=DeliveryChannel.choices)
    event = models.CharField(max_length=40, choices=Event.choices)
    payload = models.JSONField(default=dict, help_text="Labels and the deep link; never secrets.")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    message_id = models.CharField(
        max_length=64, unique=True, help_text="The webhook-id header: the same on every retry."
    )
    created_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    requeued_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=DeliveryStatus.values), name="notifications_delivery_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(channel__in=DeliveryChannel.values), name="notifications_delivery_channel_valid"
            ),
            models.CheckConstraint(
                condition=(
                    Q(channel=DeliveryChannel.EMAIL, endpoint__isnull=True) & ~Q(recipient="")
                    | ~Q(channel=DeliveryChannel.EMAIL) & Q(endpoint__isnull=False, recipient="")
                ),
                name="notifications_delivery_one_target",
            ),
        ]
        indexes = [
            # The queue: what is due (the task's claim and the sweep job's scan).
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=CLAIMABLE),
                name="notif_delivery_due_idx",
            ),
            models.Index(
                fields=["claimed_at"],
                condition=Q(status=DeliveryStatus.SENDING),
                name="notif_delivery_sending_idx",
            ),
            models.Index(fields=["endpoint", "-created_at"], name="notif_delivery_endpoint_idx"),
            models.Index(fields=["org", "channel", "-created_at"], name="notif_delivery_org_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} via {self.channel} ({self.status})"

    def __repr__(self) -> str:
        return f"<Delivery {self.id} {self.event} {self.channel} {self.status}>"

    @property
    def is_dead(self) -> bool:
        return self.status == DeliveryStatus.DEAD

    @property
    def event_label(self) -> str:
        return str(dict(Event.choices).get(self.event, self.event))

    def audit_ref(self) -> AuditRef:
        return AuditRef(type="notification_delivery", id=str(self.id), label=self.event, org_id=self.org_id)
