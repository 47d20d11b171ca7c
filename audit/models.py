"""The append-only audit log.

No foreign keys: labels are snapshots, so events outlive their subjects and no
cascade can ever delete history. UPDATE, DELETE and TRUNCATE are refused by
database triggers (migration 0002), so the guarantee holds for raw SQL too.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class ActorType(models.TextChoices):
    AGENT = "agent", "Agent"
    HUMAN = "human", "Human"
    SYSTEM = "system", "System"


class Action(models.TextChoices):
    """Stable action codes. Never rename one: exports and alerts match on them."""

    USER_CREATED = "user.created", "Person added"
    USER_UPDATED = "user.updated", "Person changed"
    USER_PASSWORD_SET = "user.password_set", "Password set"
    ORG_CREATED = "org.created", "Organization created"
    ORG_SETTINGS_CHANGED = "org.settings_changed", "Organization settings changed"
    MEMBER_ADDED = "member.added", "Member added"
    MEMBER_INVITED = "member.invited", "Member invited"
    MEMBER_INVITATION_REVOKED = "member.invitation_revoked", "Invitation revoked"
    MEMBER_JOINED = "member.joined", "Member joined"
    MEMBER_ROLE_CHANGED = "member.role_changed", "Member's role changed"
    MEMBER_REMOVED = "member.removed", "Member removed"
    MEMBER_LEFT = "member.left", "Member left"
    AGENT_CREATED = "agent.created", "Agent created"
    AGENT_KEY_ROTATED = "agent.key_rotated", "Agent key rotated"
    AGENT_SUSPENDED = "agent.suspended", "Agent suspended"
    AGENT_REACTIVATED = "agent.reactivated", "Agent reactivated"
    AUTH_REJECTED_SUSPENDED = "auth.rejected_suspended", "Suspended agent refused"
    AGENT_OWNER_CHANGED = "agent.owner_changed", "Agent's owner changed"
    AGENT_VALIDITY_CHANGED = "agent.valid_until_changed", "Agent's validity changed"
    AUTH_REJECTED_VALIDITY_ENDED = "auth.rejected_validity_ended", "Agent past its validity refused"
    TOOL_CREATED = "tool.created", "Tool created"
    TOOL_UPDATED = "tool.updated", "Tool updated"
    TOOL_CREDENTIAL_ROTATED = "tool.credential_rotated", "Tool credential rotated"
    TOOL_GUIDE_UPDATED = "tool.guide_updated", "Usage guide updated"
    TOOL_SUGGESTION_CREATED = "tool_suggestion.created", "Tool suggested"
    TOOL_SUGGESTION_SUPPORTED = "tool_suggestion.supported", "Tool suggestion backed"
    TOOL_SUGGESTION_REDIRECTED = (
        "tool_suggestion.redirected_to_existing_tool",
        "Suggestion matched an existing tool",
    )
    TOOL_SUGGESTION_COOLDOWN = "tool_suggestion.cooldown_rejected", "Suggestion refused during cooldown"
    TOOL_SUGGESTION_DISMISSED = "tool_suggestion.dismissed", "Tool suggestion dismissed"
    TOOL_SUGGESTION_ACCEPTED = "tool_suggestion.accepted", "Tool suggestion accepted"
    GUIDE_SUGGESTION_CREATED = "tool_instruction_suggestion.created", "Usage-guide improvement suggested"
    GUIDE_SUGGESTION_SUPPORTED = "tool_instruction_suggestion.supported", "Usage-guide suggestion backed"
    GUIDE_SUGGESTION_ACCEPTED = "tool_instruction_suggestion.accepted", "Usage-guide suggestion accepted"
    GUIDE_SUGGESTION_DISMISSED = "tool_instruction_suggestion.dismissed", "Usage-guide suggestion dismissed"
    GRANT_REQUESTED = "grant.requested", "Access requested"
    GRANT_APPROVED = "grant.approved", "Access approved"
    GRANT_DENIED = "grant.denied", "Access denied"
    GRANT_REVOKED = "grant.revoked", "Access revoked"
    GRANT_ASSIGNED = "grant.assigned", "Access assigned directly"
    GRANT_EXPIRED = "grant.expired", "Access expired"
    GRANT_EXTENDED = "grant.extended", "Access extended"
    GRANT_REVIEW_REQUESTED = "grant.review_requested", "Access review requested"
    GRANT_RECERTIFIED = "grant.recertified", "Access recertified"
    GRANT_REVIEW_EXPIRED = "grant.review_expired", "Access revoked: not recertified in time"
    GRANT_APPROVAL_RECORDED = "grant.approval_recorded", "Approval recorded"
    GRANT_QUORUM_EXPIRED = "grant.quorum_expired", "Approvals expired before the quorum"
    CREDENTIAL_VENDED = "credential.vended", "Credential fetched"
    ALERT_RAISED = "alert.raised", "Anomaly alert raised"
    ALERT_ACKNOWLEDGED = "alert.acknowledged", "Anomaly alert acknowledged"
    CREDENTIAL_PROXIED = "credential.proxied", "Tool called through the proxy"
    MASTER_KEY_ROTATED = "vault.master_key_rotated", "Master key rotated"
    AUDIT_EXPORTED = "audit.exported", "Audit log exported"
    NOTIFICATION_ENDPOINT_CREATED = "notification.endpoint_created", "Notification channel added"
    NOTIFICATION_ENDPOINT_UPDATED = "notification.endpoint_updated", "Notification channel changed"
    NOTIFICATION_ENDPOINT_DELETED = "notification.endpoint_deleted", "Notification channel removed"
    NOTIFICATION_SIGNING_SECRET_ROTATED = (
        "notification.signing_secret_rotated",
        "Notification channel's signing secret rotated",
    )
    NOTIFICATION_TEST_SENT = "notification.test_sent", "Test notification sent"
    NOTIFICATION_DELIVERY_RETRIED = "notification.delivery_retried", "Notification delivery retried"
    NOTIFICATION_EMAIL_UPDATED = "notification.email_updated", "Email notifications changed"
    # AI setup-guide drafts (catalog.drafts)
    GUIDE_DRAFT_STARTED = "guide_draft.started", "Usage-guide draft started"
    GUIDE_DRAFT_COMPLETED = "guide_draft.completed", "Usage-guide draft ready"
    GUIDE_DRAFT_FAILED = "guide_draft.failed", "Usage-guide draft failed"
    GUIDE_DRAFT_APPLIED = "guide_draft.applied", "Usage-guide draft applied"
    GUIDE_DRAFT_DISCARDED = "guide_draft.discarded", "Usage-guide draft discarded"


class AuditEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    org_id = models.UUIDField(null=True, blank=True)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=32, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    # The agent and tool an event concerns, whoever its actor or target: the
    # audit log's agent and tool filters are one index range scan each.
    agent_id = models.UUIDField(null=True, blank=True)
    tool_id = models.UUIDField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    signature = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["org_id", "-id"], name="audit_org_id_idx"),
            models.Index(fields=["org_id", "action", "-id"], name="audit_org_action_idx"),
            models.Index(fields=["org_id", "actor_id", "-id"], name="audit_org_actor_idx"),
            models.Index(fields=["org_id", "agent_id", "-id"], name="audit_org_agent_idx"),
            models.Index(fields=["org_id", "tool_id", "-id"], name="audit_org_tool_idx"),
            models.Index(fields=["created_at"], name="audit_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(actor_type__in=ActorType.values), name="audit_actor_type_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.id} {self.action} by {self.actor_label or self.actor_type}"

    @property
    def action_label(self) -> str:
        try:
            return str(Action(self.action).label)
        except ValueError:
            return self.action


class AuditCheckpoint(models.Model):
    """A signed seal over the events with ids first_event_id..last_event_id (audit.sealing).

    Chained: prev_hash is the hash of the previous checkpoint, so dropping or editing one
    breaks the chain; the anchor file or webhook holds copies outside the database.
    """

    sequence = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    first_event_id = models.BigIntegerField()
    last_event_id = models.BigIntegerField()
    event_count = models.PositiveIntegerField()
    # Ids inside the range that held no event when sealed (rolled-back transactions).
    missing_ids = models.JSONField(default=list, blank=True)
    # One signature tag per covered id, in id order (audit.signing.signature_tag).
    tags = models.TextField(blank=True)
    events_digest = models.CharField(max_length=64)
    prev_hash = models.CharField(max_length=64)
    signature = models.CharField(max_length=128)

    class Meta:
        ordering = ["sequence"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(last_event_id__gte=models.F("first_event_id")),
                name="audit_checkpoint_range_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"checkpoint #{self.sequence} (events {self.first_event_id}-{self.last_event_id})"
