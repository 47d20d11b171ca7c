"""The tool catalog, usage guides and what agents suggest for them."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from accounts.models import Agent, Organization, User
from agentkey.core.ids import uuid7
from audit.services import AuditRef
from vault.models import Secret


class AuthType(models.TextChoices):
    API_KEY = "api_key", "API key"
    OAUTH_TOKEN = "oauth_token", "OAuth token"
    BOT_TOKEN = "bot_token", "Bot token"
    OTHER = "other", "Other"


class CredentialMode(models.TextChoices):
    SHARED = "shared", "One credential shared by every approved agent"
    PER_AGENT = "per_agent", "A credential per agent, given at approval"


def proxy_path(tool_id: uuid.UUID) -> str:
    """The path agents call a proxy-mode tool through (the upstream path is appended)."""
    return f"/proxy/{tool_id}/"


class AccessMode(models.TextChoices):
    VEND = "vend", "Vend: approved agents fetch the credential"
    PROXY = "proxy", "Proxy: agents call the tool through AgentKey and never see the credential"


class InjectAs(models.TextChoices):
    HEADER = "header", "A request header"
    QUERY = "query", "A query-string parameter"


# The shape of a stored upstream origin: scheme and authority only (no path, query, fragment or
# userinfo); catalog.upstream.clean_origin normalizes and SSRF-checks it before it is stored.
UPSTREAM_ORIGIN_SHAPE = r"^https?://[^/?#@\s]+$"
#: Most distinct approvers a tool may require (N of N-of-M). The database also refuses 0.
MAX_REQUIRED_APPROVALS = 5


class Tool(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="tools")
    config_key = models.SlugField(max_length=80, help_text="Stable key for catalog-as-code.")
    name = models.CharField(max_length=120)
    normalized_name = models.CharField(max_length=120, editable=False)
    description = models.TextField(blank=True, max_length=2000)
    url = models.URLField(max_length=500, blank=True)
    normalized_domain = models.CharField(max_length=253, blank=True, editable=False)
    auth_type = models.CharField(max_length=16, choices=AuthType.choices, default=AuthType.API_KEY)
    credential_mode = models.CharField(
        max_length=16, choices=CredentialMode.choices, default=CredentialMode.SHARED
    )
    secret = models.OneToOneField(Secret, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    usage_guide = models.TextField(blank=True, max_length=20000)
    current_guide_version = models.PositiveIntegerField(default=1)
    credential_rotated_at = models.DateTimeField(null=True, blank=True)
    credential_expires_at = models.DateTimeField(null=True, blank=True)
    # Proxy mode (docs/proxy.md): agents call /proxy/<tool id>/<path>; AgentKey injects the
    # credential and forwards to upstream_origin only.
    access_mode = models.CharField(max_length=8, choices=AccessMode.choices, default=AccessMode.VEND)
    upstream_origin = models.CharField(max_length=300, blank=True)
    inject_as = models.CharField(max_length=8, choices=InjectAs.choices, default=InjectAs.HEADER)
    inject_name = models.CharField(max_length=100, blank=True, default="Authorization")
    inject_template = models.CharField(max_length=200, blank=True, default="Bearer {credential}")
    # Governance (docs/governance.md): N distinct approvers, separation of duties, decoys.
    required_approvals = models.PositiveSmallIntegerField(default=1)
    separation_of_duties = models.BooleanField(
        default=False,
        help_text="Neither the agent's creator or owner nor the tool's owner may approve access to it.",
    )
    owner = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_tools"
    )
    is_canary = models.BooleanField(
        default=False, help_text="A decoy: any request or suggestion for it raises a high-severity alert."
    )
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Zero approvals can never mean "open": the database refuses it, whatever the code does.
            models.CheckConstraint(
                condition=Q(required_approvals__gte=1, required_approvals__lte=MAX_REQUIRED_APPROVALS),
                name="catalog_tool_required_approvals_at_least_one",
            ),
            models.UniqueConstraint(fields=["org", "config_key"], name="catalog_tool_config_key_unique"),
            models.UniqueConstraint(fields=["org", "normalized_name"], name="catalog_tool_name_unique"),
            models.CheckConstraint(
                condition=Q(auth_type__in=AuthType.values), name="catalog_tool_auth_type_valid"
            ),
            models.CheckConstraint(
                condition=Q(credential_mode__in=CredentialMode.values), name="catalog_tool_mode_valid"
            ),
            # A per-agent tool keeps its credentials on the grants, never on the tool.
            models.CheckConstraint(
                condition=Q(credential_mode=CredentialMode.SHARED) | Q(secret__isnull=True),
                name="catalog_tool_per_agent_has_no_shared_secret",
            ),
            models.CheckConstraint(
                condition=Q(access_mode__in=AccessMode.values), name="catalog_tool_access_mode_valid"
            ),
            models.CheckConstraint(
                condition=Q(inject_as__in=InjectAs.values), name="catalog_tool_inject_as_valid"
            ),
            models.CheckConstraint(
                condition=Q(upstream_origin="") | Q(upstream_origin__regex=UPSTREAM_ORIGIN_SHAPE),
                name="catalog_tool_upstream_origin_shape",
            ),
            # A proxy tool knows where to forward and how to inject; a header template uses the credential.
            models.CheckConstraint(
                condition=Q(access_mode=AccessMode.VEND)
                | (
                    ~Q(upstream_origin="")
                    & ~Q(inject_name="")
                    & (Q(inject_as=InjectAs.QUERY) | Q(inject_template__contains="{credential}"))
                ),
                name="catalog_tool_proxy_is_configured",
            ),
        ]
        indexes = [models.Index(fields=["org", "-created_at"], name="catalog_tool_org_created_idx")]

    def __str__(self) -> str:
        return self.name

    @property
    def proxied(self) -> bool:
        return self.access_mode == AccessMode.PROXY

    @property
    def proxy_path(self) -> str:
        """Where agents call this tool in proxy mode (append the upstream path)."""
        return proxy_path(self.id)

    def audit_ref(self) -> AuditRef:
        return AuditRef(type="tool", id=str(self.id), label=self.name, org_id=self.org_id, tool_id=self.id)


class GuideVersion(models.Model):
    """Append-only history of a tool's usage guide."""

    tool = models.ForeignKey(Tool, on_delete=models.CASCADE, related_name="guide_versions")
    version = models.PositiveIntegerField()
    content = models.TextField(blank=True)
    created_by_label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["tool", "version"], name="catalog_guide_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.tool_id} v{self.version}"


class SuggestionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DISMISSED = "dismissed", "Dismissed"
    ACCEPTED = "accepted", "Accepted"


class ToolSuggestion(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="tool_suggestions")
    name = models.CharField(max_length=120)
    normalized_name = models.CharField(max_length=120)
    url = models.CharField(max_length=600, blank=True)
    normalized_domain = models.CharField(max_length=253, blank=True)
    status = models.CharField(
        max_length=16, choices=SuggestionStatus.choices, default=SuggestionStatus.PENDING
    )
    dismissed_until = models.DateTimeField(null=True, blank=True)
    dismissal_reason = models.CharField(max_length=500, blank=True)
    converted_tool = models.ForeignKey(
        Tool, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=SuggestionStatus.values), name="catalog_suggestion_status_valid"
            ),
        ]
        indexes = [
            models.Index(
                fields=["org", "normalized_name"],
                condition=~Q(status="accepted"),
                name="catalog_suggestion_open_name",
            ),
            models.Index(
                fields=["org", "normalized_domain"],
                condition=~Q(status="accepted"),
                name="catalog_suggestion_open_domain",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def audit_ref(self) -> AuditRef:
        return AuditRef(type="tool_suggestion", id=str(self.id), label=self.name, org_id=self.org_id)


class SuggestionBacker(models.Model):
    suggestion = models.ForeignKey(ToolSuggestion, on_delete=models.CASCADE, related_name="backers")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    latest_reason = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["suggestion", "agent"], name="catalog_backer_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} backs {self.suggestion_id}"


class GuideSuggestion(models.Model):
    """An agent's proposed improvement to a tool's usage guide."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    tool = models.ForeignKey(Tool, on_delete=models.CASCADE, related_name="guide_suggestions")
    base_version = models.PositiveIntegerField()
    learned = models.TextField(max_length=2000)
    normalized_learned = models.TextField()
    # Uniqueness is on a digest: an index entry cannot hold 2,000 characters of CJK text.
    learned_digest = models.CharField(max_length=64)
    status = models.CharField(
        max_length=16, choices=SuggestionStatus.choices, default=SuggestionStatus.PENDING
    )
    dismissal_reason = models.CharField(max_length=500, blank=True)
    decided_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tool", "base_version", "learned_digest"], name="catalog_guide_suggestion_unique"
            ),
            models.CheckConstraint(
                condition=Q(status__in=SuggestionStatus.values), name="catalog_guide_suggestion_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"guide suggestion for {self.tool_id}"

    def audit_ref(self) -> AuditRef:
        return AuditRef(
            type="guide_suggestion",
            id=str(self.id),
            label=self.learned[:80],
            org_id=self.org_id,
            tool_id=self.tool_id,
        )


class GuideSuggestionBacker(models.Model):
    suggestion = models.ForeignKey(GuideSuggestion, on_delete=models.CASCADE, related_name="backers")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    latest_why = models.TextField(max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["suggestion", "agent"], name="catalog_guide_backer_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} backs {self.suggestion_id}"


# --- AI setup-guide drafts (catalog.drafts) --------------------------------------------------------


class DraftStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class GuideDraft(models.Model):
    """A usage guide drafted from a documentation page, for an admin to review.

    The content is written once, when generation finishes; a failed draft keeps
    none. A draft never becomes the usage guide by itself: an admin applies it
    (``catalog.drafts.services.draft_apply``), edited or not.
    """

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    tool = models.ForeignKey(
        Tool, null=True, blank=True, on_delete=models.CASCADE, related_name="guide_drafts"
    )
    suggestion = models.ForeignKey(
        ToolSuggestion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source_url = models.CharField(max_length=600)
    status = models.CharField(max_length=16, choices=DraftStatus.choices, default=DraftStatus.PENDING)
    content = models.TextField(blank=True)
    model = models.CharField(max_length=200, help_text='The language model that wrote it, or "offline".')
    error = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    applied_version = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=DraftStatus.values), name="catalog_guide_draft_status_valid"
            ),
            # No half-saved draft: text exists only once generation has finished.
            models.CheckConstraint(
                condition=Q(status=DraftStatus.DONE) | Q(content=""),
                name="catalog_guide_draft_content_only_when_done",
            ),
        ]
        indexes = [
            models.Index(fields=["org", "-created_at"], name="catalog_draft_org_created_idx"),
            models.Index(fields=["tool", "-created_at"], name="catalog_draft_tool_created_idx"),
        ]

    def __str__(self) -> str:
        return f"guide draft from {self.source_url[:80]}"

    @property
    def offline(self) -> bool:
        return self.model == "offline"

    def audit_ref(self) -> AuditRef:
        return AuditRef(
            type="guide_draft",
            id=str(self.id),
            label=self.source_url[:200],
            org_id=self.org_id,
            tool_id=self.tool_id,
        )
