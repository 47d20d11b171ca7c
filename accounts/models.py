"""People, organizations, roles, agents and agent keys."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from agentkey.core.ids import uuid7
from audit.models import ActorType
from audit.services import AuditRef


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A human. Signs in with an email address."""

    email = models.EmailField(max_length=254, unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email

    def audit_actor(self) -> AuditRef:
        return AuditRef(type=ActorType.HUMAN, id=str(self.pk), label=self.email)

    def audit_ref(self) -> AuditRef:
        return AuditRef(type="user", id=str(self.pk), label=self.email)


# The bounds of any time-bound access: what an agent may ask for, an approver may give,
# and an organization may set as its maximum.
GRANT_DURATION_MIN = timedelta(hours=1)
GRANT_DURATION_MAX = timedelta(days=30)
# Governance bounds (docs/governance.md): how long a partial quorum waits, how old a grant gets
# before it needs recertifying, and how long a review may stay open before the grant is revoked.
QUORUM_WINDOW_DEFAULT = timedelta(hours=72)
QUORUM_WINDOW_MIN = timedelta(hours=1)
QUORUM_WINDOW_MAX = timedelta(days=30)
ACCESS_REVIEW_AFTER_MIN = timedelta(days=1)
ACCESS_REVIEW_AFTER_MAX = timedelta(days=365)
ACCESS_REVIEW_GRACE_DEFAULT = timedelta(days=7)
ACCESS_REVIEW_GRACE_MIN = timedelta(hours=1)
ACCESS_REVIEW_GRACE_MAX = timedelta(days=90)


class OwnerDeparture(models.TextChoices):
    """What happens to an agent whose human owner leaves the organization."""

    SUSPEND = "suspend", "Suspend the agent"
    REASSIGN = "reassign", "Reassign the agent to an owner of the organization"


class Organization(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=140, unique=True)
    # The longest access an approval, assignment or extension may give; None: no maximum
    # (then "no expiry" is allowed). Changed only through ``org_set_max_grant_duration``.
    max_grant_duration = models.DurationField(null=True, blank=True)
    # How long approvals short of a tool's quorum stay valid before the request expires.
    quorum_window = models.DurationField(default=QUORUM_WINDOW_DEFAULT)
    # Kill switch: an anomaly alert suspends the agent it is about.
    anomaly_auto_suspend = models.BooleanField(default=False)
    owner_departure = models.CharField(
        max_length=16, choices=OwnerDeparture.choices, default=OwnerDeparture.SUSPEND
    )
    # Access reviews: approved grants older than this enter the review queue (None: off) ...
    access_review_after = models.DurationField(null=True, blank=True)
    # ... and are revoked when nobody recertifies them within this grace period.
    access_review_grace = models.DurationField(default=ACCESS_REVIEW_GRACE_DEFAULT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    quorum_window__gte=QUORUM_WINDOW_MIN, quorum_window__lte=QUORUM_WINDOW_MAX
                ),
                name="accounts_org_quorum_window_in_range",
            ),
            models.CheckConstraint(
                condition=models.Q(owner_departure__in=OwnerDeparture.values),
                name="accounts_org_owner_departure_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(access_review_after__isnull=True)
                | models.Q(
                    access_review_after__gte=ACCESS_REVIEW_AFTER_MIN,
                    access_review_after__lte=ACCESS_REVIEW_AFTER_MAX,
                ),
                name="accounts_org_access_review_after_in_range",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    access_review_grace__gte=ACCESS_REVIEW_GRACE_MIN,
                    access_review_grace__lte=ACCESS_REVIEW_GRACE_MAX,
                ),
                name="accounts_org_access_review_grace_in_range",
            ),
            models.CheckConstraint(
                condition=models.Q(max_grant_duration__isnull=True)
                | models.Q(
                    max_grant_duration__gte=GRANT_DURATION_MIN,
                    max_grant_duration__lte=GRANT_DURATION_MAX,
                ),
                name="accounts_org_max_grant_duration_in_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def audit_ref(self) -> AuditRef:
        return AuditRef(type="organization", id=str(self.id), label=self.name, org_id=self.id)


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    APPROVER = "approver", "Approver"
    AUDITOR = "auditor", "Auditor"


class Membership(models.Model):
    """A person's role in one organization; the actor for human decisions."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "user"], name="accounts_membership_unique"),
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="accounts_membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} as {self.role} in {self.org_id}"

    def audit_actor(self) -> AuditRef:
        return AuditRef(type=ActorType.HUMAN, id=str(self.user_id), label=self.user.email, org_id=self.org_id)

    def audit_ref(self) -> AuditRef:
        return AuditRef(type="membership", id=str(self.pk), label=self.user.email, org_id=self.org_id)


class AgentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"


class Agent(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="agents")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, max_length=1000)
    status = models.CharField(max_length=16, choices=AgentStatus.choices, default=AgentStatus.ACTIVE)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The person accountable for the agent. Set on creation; when they leave the organization
    # the agent is suspended or reassigned (Organization.owner_departure).
    owner = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_agents"
    )
    # After this moment the agent is refused like a suspended one, and the lifecycle job suspends it.
    valid_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)

    # DRF treats the authenticated principal as request.user.
    is_authenticated = True
    is_anonymous = False

    class Meta:
        constraints = [
            models.UniqueConstraint("org", Lower("name"), name="accounts_agent_name_unique_in_org"),
            models.CheckConstraint(
                condition=models.Q(status__in=AgentStatus.values), name="accounts_agent_status_valid"
            ),
        ]
        indexes = [
            models.Index(
                fields=["valid_until"],
                condition=models.Q(status="active", valid_until__isnull=False),
                name="accounts_agent_valid_until_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == AgentStatus.ACTIVE

    def audit_actor(self) -> AuditRef:
        return AuditRef(
            type=ActorType.AGENT, id=str(self.id), label=self.name, org_id=self.org_id, agent_id=self.id
        )

    def audit_ref(self) -> AuditRef:
        return AuditRef(type="agent", id=str(self.id), label=self.name, org_id=self.org_id, agent_id=self.id)


class AgentKey(models.Model):
    """An agent's API key. Only its SHA-256 is stored; the plaintext is shown once."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="keys")
    prefix = models.CharField(max_length=16, help_text="The first characters, to tell keys apart.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["agent"],
                condition=models.Q(revoked_at__isnull=True),
                name="accounts_agentkey_live_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.prefix}…"

    def __repr__(self) -> str:
        return f"<AgentKey {self.id} {self.prefix}…>"

    def is_live(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class Invitation(models.Model):
    """An invitation to join an organization. The link carries a random token; only its digest is stored."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(max_length=254)
    role = models.CharField(max_length=16, choices=Role.choices)
    token_digest = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="accounts_invitation_role_valid"
            ),
        ]
        indexes = [
            models.Index(
                fields=["org", "email"],
                condition=models.Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="accounts_invitation_open_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.email} as {self.role}"

    def audit_ref(self) -> AuditRef:
        return AuditRef(type="invitation", id=str(self.id), label=self.email, org_id=self.org_id)

    def is_open(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > now
