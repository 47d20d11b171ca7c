"""Access grants: one row per (agent, tool), reused across request cycles.

The history of a grant lives in the audit log; the row holds its current state.
"""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Agent, Organization, User
from agentkey.core.ids import uuid7
from audit.services import AuditRef
from catalog.models import Tool
from vault.models import Secret


class GrantStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"


class AccessGrant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="grants")
    tool = models.ForeignKey(Tool, on_delete=models.PROTECT, related_name="grants")
    status = models.CharField(max_length=16, choices=GrantStatus.choices, default=GrantStatus.PENDING)
    reason = models.TextField(max_length=500, blank=True)
    requested_duration = models.DurationField(null=True, blank=True)
    denial_reason = models.TextField(max_length=500, blank=True)
    secret = models.OneToOneField(Secret, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    expires_at = models.DateTimeField(null=True, blank=True)
    requested_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_by_label = models.CharField(max_length=200, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    # Access reviews: when the access was last approved or recertified, and when the open
    # review (if any) started. Unreviewed past the organization's grace, the grant is revoked.
    certified_at = models.DateTimeField(null=True, blank=True)
    review_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "tool"], name="grants_one_per_agent_and_tool"),
            models.CheckConstraint(condition=Q(status__in=GrantStatus.values), name="grants_status_valid"),
            models.CheckConstraint(
                condition=~Q(status=GrantStatus.DENIED) | ~Q(denial_reason=""),
                name="grants_denied_has_reason",
            ),
            models.CheckConstraint(
                condition=Q(status=GrantStatus.APPROVED) | Q(secret__isnull=True),
                name="grants_secret_only_while_approved",
            ),
        ]
        indexes = [
            models.Index(
                fields=["org", "requested_at"],
                condition=Q(status="pending"),
                name="grants_pending_inbox_idx",
            ),
            models.Index(fields=["tool", "status"], name="grants_tool_status_idx"),
            models.Index(
                fields=["expires_at"],
                condition=Q(status="approved", expires_at__isnull=False),
                name="grants_approved_expiry_idx",
            ),
            models.Index(
                fields=["org", "review_requested_at"],
                condition=Q(status="approved", review_requested_at__isnull=False),
                name="grants_review_queue_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} → {self.tool_id} ({self.status})"

    def audit_ref(self) -> AuditRef:
        label = f"{self.agent.name} → {self.tool.name}"
        return AuditRef(
            type="access_grant",
            id=str(self.id),
            label=label,
            org_id=self.org_id,
            agent_id=self.agent_id,
            tool_id=self.tool_id,
        )

    def effective_status(self, now: datetime | None = None) -> str:
        """The status an agent sees: an approval past its expiry is expired,
        whether or not the expiry job has marked it yet."""
        expired = self.expires_at is not None and self.expires_at <= (now or timezone.now())
        if self.status == GrantStatus.APPROVED and expired:
            return GrantStatus.EXPIRED
        return self.status


class GrantApproval(models.Model):
    """One approver's yes to one request cycle of a grant (N-of-M approvals).

    A grant row is reused across request cycles, so an approval belongs to the cycle that
    began at ``cycle``, the grant's ``requested_at``; a new request starts a fresh count.
    The database keeps approvers distinct within a cycle.
    """

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    grant = models.ForeignKey(AccessGrant, on_delete=models.CASCADE, related_name="approvals")
    cycle = models.DateTimeField()
    approver = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    approver_label = models.CharField(max_length=200)
    # The expiry this approver chose (None: no expiry); the grant gets the earliest of the quorum's.
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["grant", "cycle", "approver"], name="grants_one_approval_per_approver_and_cycle"
            ),
        ]
        indexes = [models.Index(fields=["grant", "cycle"], name="grants_approval_cycle_idx")]

    def __str__(self) -> str:
        return f"{self.approver_label} approved {self.grant_id}"


class AlertRule(models.TextChoices):
    VEND_RATE = "vend_rate", "Vend rate far above the agent's baseline"
    OFF_HOURS = "off_hours", "Vends outside the agent's usual hours"
    AUTH_FAILURES = "auth_failures", "Burst of refused keys from one address"
    NEW_TOOLS_BURST = "new_tools_burst", "Requests for many new tools in a short time"
    CANARY = "canary", "Request or suggestion for a canary tool"


class AlertSeverity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class Alert(models.Model):
    """One anomaly the rules noticed (grants.anomalies). Raised once per condition and window:
    ``dedup_key`` (organization, rule, subject, window start) is unique, so a job running every
    minute or a burst of requests cannot raise the same alert twice. Labels are snapshots and
    the summary never carries a secret. An address-only alert (keys nobody recognises) has no
    organization: operators see it in the Django admin."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    org = models.ForeignKey(Organization, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    agent_label = models.CharField(max_length=200, blank=True)
    tool = models.ForeignKey(Tool, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    tool_label = models.CharField(max_length=200, blank=True)
    rule = models.CharField(max_length=32, choices=AlertRule.choices)
    severity = models.CharField(max_length=16, choices=AlertSeverity.choices)
    summary = models.CharField(max_length=300)
    details = models.JSONField(default=dict, blank=True)
    source_address = models.GenericIPAddressField(null=True, blank=True)
    window_start = models.DateTimeField()
    dedup_key = models.CharField(max_length=200, unique=True)
    agent_suspended = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_by_label = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(rule__in=AlertRule.values), name="grants_alert_rule_valid"),
            models.CheckConstraint(
                condition=Q(severity__in=AlertSeverity.values), name="grants_alert_severity_valid"
            ),
        ]
        indexes = [models.Index(fields=["org", "-created_at"], name="grants_alert_org_created_idx")]

    def __str__(self) -> str:
        return f"{self.severity} {self.rule}: {self.summary}"

    def audit_ref(self) -> AuditRef:
        return AuditRef(
            type="alert",
            id=str(self.id),
            label=self.summary,
            org_id=self.org_id,
            agent_id=self.agent_id,
            tool_id=self.tool_id,
        )
