"""Tools and access grants in the operator console.

Approve, deny, revoke and assign call the same services as the CLI and the API
(DESIGN §6). Credentials are write-only: entered here, never rendered back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters

from accounts.admin_kit import (
    REFUSED,
    OrgScopedAdmin,
    ReadOnlyInline,
    ServiceAdmin,
    ServiceForm,
    actor_for,
    as_text,
    expiry,
    report,
    write_only_field,
)
from accounts.permissions import Capability, HumanActor
from agentkey.core.durations import format_duration
from catalog.models import AccessMode, CredentialMode, GuideVersion, InjectAs, Tool
from catalog.services import tool_guide_update, tool_rotate_credential
from grants.models import AccessGrant, Alert, GrantStatus
from grants.quorum import cycle_approvals
from grants.services import (
    AS_REQUESTED,
    AsRequested,
    grant_approve,
    grant_assign,
    grant_deny,
    grant_revoke,
    tool_add,
    tool_edit,
)

# --- tools ---------------------------------------------------------------------------------------
# Registered here, not in catalog/admin.py: tools are created by grants.services.tool_add and catalog may not import grants.

URL_HELP = "The tool's website, such as https://linear.app. Agents' suggestions are matched by its domain."
PROXY_FIELDS = ("access_mode", "upstream_origin", "inject_as", "inject_name", "inject_template")
ORIGIN_HELP = (
    "Proxy mode: the API's https://host[:port], nothing more. Agents call /proxy/<tool id>/<path>; "
    "AgentKey injects the credential and forwards there only (private and loopback addresses are refused)."
)


def proxy_values(form: Any) -> dict[str, str]:
    """The proxy fields the form posted (one left out keeps its default or stored value)."""
    data = form.cleaned_data
    return {name: as_text(data.get(name) or "") for name in PROXY_FIELDS if name in form.data}


class ProxyFormFields(ServiceForm):
    access_mode = forms.ChoiceField(choices=AccessMode.choices, required=False, initial=AccessMode.VEND)
    upstream_origin = forms.CharField(required=False, max_length=300, help_text=ORIGIN_HELP)
    inject_as = forms.ChoiceField(choices=InjectAs.choices, required=False, initial=InjectAs.HEADER)


class ToolAddForm(ProxyFormFields):
    url = forms.CharField(label="URL", required=False, max_length=500, help_text=URL_HELP)
    credential = write_only_field(
        required=False,
        help_text="Shared tools: the credential every approved agent receives (you can also add it later). "
        "Per-agent tools: leave empty; each agent's credential is given when its request is approved.",
    )
    config_key = forms.SlugField(
        required=False,
        max_length=80,
        help_text="Stable key for catalog-as-code. Derived from the name when empty.",
    )


class ToolChangeForm(ProxyFormFields):
    url = forms.CharField(label="URL", required=False, max_length=500, help_text=URL_HELP)
    credential = write_only_field(
        label="New credential",
        required=False,
        help_text="Leave empty to keep the current credential. A value replaces it; "
        "the very next fetch by an agent returns the new one.",
    )


class GuideVersionInline(ReadOnlyInline):
    model = GuideVersion
    fields = ("version", "created_by_label", "created_at", "content")
    ordering = ("-version",)
    verbose_name_plural = "Usage guide history"


TOOL_FIELDSETS: list[tuple[str | None, tuple[str, ...]]] = [
    (None, ("org", "config_key", "name", "description", "url", "auth_type")),
    (
        "Credential",
        (
            "credential_mode",
            "credential_state",
            "credential_rotated_at",
            "credential_expires_at",
            "credential",
        ),
    ),
    (
        "Vend or proxy",
        ("access_mode", "upstream_origin", "inject_as", "inject_name", "inject_template"),
    ),
    ("Usage guide", ("usage_guide", "current_guide_version")),
    # Read-only here: changed in the console's tool form or catalog-as-code (audited services).
    ("Approvals", ("required_approvals", "separation_of_duties", "owner")),
    ("History", ("created_by", "created_at", "updated_at")),
]


class SensitiveCredential:
    """Credential fields are masked in any error report of the add and change pages."""

    @method_decorator(sensitive_post_parameters("credential"))
    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return super().changeform_view(request, *args, **kwargs)  # type: ignore[misc,no-any-return]


@admin.register(Tool)
class ToolAdmin(SensitiveCredential, ServiceAdmin[Tool]):
    add_capability = Capability.MANAGE_TOOLS
    change_capability = Capability.MANAGE_TOOLS
    form = ToolChangeForm
    add_form = ToolAddForm
    add_fields = (
        "org",
        "name",
        "description",
        "url",
        "auth_type",
        "credential_mode",
        "credential",
        *PROXY_FIELDS,
        "usage_guide",
        "config_key",
    )
    change_fields = tuple(name for _, names in TOOL_FIELDSETS for name in names)
    editable_fields = ("name", "description", "url", "auth_type", "credential", "usage_guide", *PROXY_FIELDS)
    list_display = (
        "name",
        "org",
        "auth_type",
        "credential_mode",
        "credential_state",
        "credential_rotated_at",
        "current_guide_version",
        "created_at",
    )
    list_select_related = ("org",)
    list_filter = ("credential_mode", "auth_type", ("org", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "config_key", "url")
    ordering = ("-created_at",)
    inlines = (GuideVersionInline,)

    @admin.display(description="credential")
    def credential_state(self, obj: Tool) -> str:
        if obj.credential_mode == CredentialMode.PER_AGENT:
            return "per agent (held by each approved grant)"
        return "set" if obj.secret_id is not None else "not set"

    def get_fields(self, request: HttpRequest, obj: Tool | None = None) -> list[Any]:
        fields = list(super().get_fields(request, obj))
        shared = obj is None or obj.credential_mode == CredentialMode.SHARED
        if obj is not None and not (shared and self.has_change_permission(request, obj)):
            fields.remove("credential")
        return fields

    def get_fieldsets(self, request: HttpRequest, obj: Tool | None = None) -> Any:
        fields = self.get_fields(request, obj)
        if obj is None:
            return [(None, {"fields": fields})]
        return [(title, {"fields": [n for n in names if n in fields]}) for title, names in TOOL_FIELDSETS]

    def save_model(self, request: HttpRequest, obj: Tool, form: Any, change: Any) -> None:
        data = form.cleaned_data
        proxy = proxy_values(form)
        if not change:
            org = data["org"]
            created = tool_add(
                org=org,
                actor=actor_for(request, org.id),
                name=data["name"],
                description=as_text(data["description"]),
                url=data["url"],
                auth_type=data["auth_type"],
                credential_mode=data["credential_mode"],
                credential=data["credential"] or None,
                usage_guide=as_text(data["usage_guide"]),
                config_key=data["config_key"],
                access_mode=proxy.get("access_mode") or AccessMode.VEND,
                upstream_origin=proxy.get("upstream_origin", ""),
                inject_as=proxy.get("inject_as") or InjectAs.HEADER,
                inject_name=proxy.get("inject_name", "Authorization"),
                inject_template=proxy.get("inject_template", "Bearer {credential}"),
            )
            self.adopt(obj, created.tool)
            if created.accepted:
                messages.info(
                    request,
                    f"The tool answers {len(created.accepted)} suggestion(s), now accepted; "
                    "their backing agents have pending access requests.",
                )
            return
        actor = actor_for(request, obj.org_id)
        tool_edit(
            tool=obj,
            actor=actor,
            name=data["name"],
            description=as_text(data["description"]),
            url=data["url"],
            auth_type=data["auth_type"],
            access_mode=proxy.get("access_mode") or None,
            upstream_origin=proxy.get("upstream_origin"),
            inject_as=proxy.get("inject_as") or None,
            inject_name=proxy.get("inject_name"),
            inject_template=proxy.get("inject_template"),
        )
        if data.get("credential"):
            tool_rotate_credential(tool=obj, actor=actor, credential=data["credential"])
        guide = as_text(data["usage_guide"])
        if guide != obj.usage_guide:
            tool_guide_update(tool=obj, actor=actor, content=guide)
        obj.refresh_from_db()


# --- access grants -------------------------------------------------------------------------------


def approval_expiry(choice: str) -> datetime | AsRequested | None:
    return AS_REQUESTED if choice == "requested" else expiry(choice)


APPROVE_DURATIONS = [
    ("requested", "As the agent asked (no expiry if it did not ask)"),
    ("none", "No expiry"),
    ("1h", "1 hour"),
    ("8h", "8 hours"),
    ("1d", "1 day"),
    ("7d", "7 days"),
    ("30d", "30 days"),
]
ASSIGN_DURATIONS = APPROVE_DURATIONS[1:]


class ApproveForm(forms.Form):
    duration = forms.ChoiceField(label="Access lasts", choices=APPROVE_DURATIONS, initial="requested")


class ApproveOneForm(ApproveForm):
    def __init__(self, *args: Any, per_agent: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if per_agent:
            self.fields["credential"] = write_only_field(
                required=True,
                help_text="This tool uses a credential per agent: this agent's own credential. "
                "It is stored encrypted and deleted when the access ends.",
            )


class DenyForm(forms.Form):
    reason = forms.CharField(
        min_length=5,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The agent sees this reason and can ask again with a different justification.",
    )


class RevokeForm(forms.Form):
    reason = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Optional: why, for the audit log.",
    )


class AssignForm(ServiceForm):
    duration = forms.ChoiceField(label="Access lasts", choices=ASSIGN_DURATIONS, initial="none")
    credential = write_only_field(
        required=False,
        help_text="Per-agent tools only: this agent's own credential. Leave empty for shared tools.",
    )


@admin.register(AccessGrant)
class AccessGrantAdmin(SensitiveCredential, ServiceAdmin[AccessGrant]):
    """Requests and access. Rows change only through the actions, the approve page and
    the direct-assignment form; the change page is read-only."""

    add_capability = Capability.DECIDE_GRANTS
    add_form = AssignForm
    add_fields = ("agent", "tool", "duration", "credential")
    change_fields = (
        "id",
        "org",
        "agent",
        "tool",
        "status",
        "effective",
        "reason",
        "requested_duration",
        "requested_at",
        "expires_at",
        "denial_reason",
        "credential_state",
        "approvals_state",
        "decided_by_label",
        "decided_at",
        "created_at",
        "updated_at",
    )
    list_display = (
        "agent",
        "tool",
        "org",
        "status",
        "effective",
        "expires_at",
        "requested_at",
        "decided_by_label",
    )
    list_select_related = ("agent", "tool", "org")
    list_filter = (
        "status",
        ("org", admin.RelatedOnlyFieldListFilter),
        ("tool", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("agent__name", "tool__name", "reason")
    ordering = ("-requested_at",)
    actions = ("approve_selected", "deny_selected", "revoke_selected")

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccessGrant]:
        return super().get_queryset(request).select_related("agent", "tool", "org")

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return self.allowed(request, Capability.DECIDE_GRANTS)

    def describe(self, obj: AccessGrant) -> str:
        return f"{obj.agent.name} → {obj.tool.name}"

    @admin.display(description="effective status")
    def effective(self, obj: AccessGrant) -> str:
        return str(GrantStatus(obj.effective_status()).label)

    @admin.display(description="credential")
    def credential_state(self, obj: AccessGrant) -> str:
        if obj.tool.credential_mode == CredentialMode.SHARED:
            return "the tool's shared credential"
        return "set" if obj.secret_id is not None else "not set"

    @admin.display(description="approvals")
    def approvals_state(self, obj: AccessGrant) -> str:
        """The current request cycle's approvals against the tool's quorum (N-of-M)."""
        approvals = cycle_approvals(obj)
        text = f"{len(approvals)} of {obj.tool.required_approvals}"
        return text + (" — " + ", ".join(a.approver_label for a in approvals) if approvals else "")

    def approve_url(self, obj: AccessGrant) -> str:
        return reverse("admin:grants_accessgrant_approve", args=[obj.pk])

    # --- direct assignment (the add page) ---

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().add_view(
            request, form_url, {"title": "Assign access directly", **(extra_context or {})}
        )

    def save_model(self, request: HttpRequest, obj: AccessGrant, form: Any, change: Any) -> None:
        data = form.cleaned_data
        tool = data["tool"]
        grant = grant_assign(
            agent=data["agent"],
            tool=tool,
            actor=actor_for(request, tool.org_id),
            expires_at=expiry(data["duration"]),
            credential=data["credential"] or None,
        )
        self.adopt(obj, grant)

    # --- the change page: read-only, with a way to approve one request ---

    def render_change_form(  # noqa: PLR0917 (Django's signature)
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: AccessGrant | None = None,
    ) -> HttpResponse:
        context["can_approve"] = (
            obj is not None and obj.status == GrantStatus.PENDING and self.has_decide_permission(request)
        )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self) -> list[URLPattern]:
        approve = path(
            "<path:object_id>/approve/",
            self.admin_site.admin_view(self.approve_view),
            name="grants_accessgrant_approve",
        )
        return [approve, *super().get_urls()]

    @method_decorator(sensitive_post_parameters("credential"))
    def approve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Approve one request; the only way to approve a per-agent tool, which needs a credential."""
        if not self.has_decide_permission(request):
            raise PermissionDenied
        grant = self.object_or_redirect(request, object_id)
        if isinstance(grant, HttpResponseRedirect):
            return grant
        # With a quorum, only the approval that completes it carries the per-agent credential.
        completes = len(cycle_approvals(grant)) + 1 >= grant.tool.required_approvals
        per_agent = grant.tool.credential_mode == CredentialMode.PER_AGENT and completes
        form = ApproveOneForm(request.POST if request.method == "POST" else None, per_agent=per_agent)
        if form.is_bound and form.is_valid():
            try:
                decided = grant_approve(
                    grant=grant,
                    reviewer=actor_for(request, grant.org_id),
                    expires_at=approval_expiry(form.cleaned_data["duration"]),
                    credential=form.cleaned_data.get("credential") or None,
                )
            except REFUSED as exc:
                report(request, exc)
            else:
                if decided.status == GrantStatus.PENDING:
                    messages.success(
                        request,
                        f"Approval recorded: {self.describe(grant)} ({self.approvals_state(decided)}); "
                        "access opens once enough other people approve.",
                    )
                else:
                    messages.success(request, f"Approved: {self.describe(grant)}.")
                return HttpResponseRedirect(self.change_url(grant))
        asked = (
            f" It asked for {format_duration(grant.requested_duration)}." if grant.requested_duration else ""
        )
        return self.object_page(
            request,
            grant,
            title=f"Approve {self.describe(grant)}",
            intro=f"{grant.agent.name} asks for {grant.tool.name} (this request is {grant.effective_status()}). "
            f"Its reason: “{grant.reason}”{asked}",
            form=form,
            submit="Approve",
        )

    # --- actions ---

    @admin.action(description="Approve selected requests…", permissions=["decide"])
    def approve_selected(
        self, request: HttpRequest, queryset: QuerySet[AccessGrant]
    ) -> TemplateResponse | None:
        grants = self.selection(request, queryset)
        if not grants:
            return None
        per_agent = [g for g in grants if g.tool.credential_mode == CredentialMode.PER_AGENT]
        form = ApproveForm(request.POST if request.POST.get("apply") else None)
        if not (form.is_bound and form.is_valid()):
            notes = {}
            for grant in grants:
                if grant in per_agent:
                    notes[grant.pk] = "needs this agent's own credential: approve it from its own page"
                elif grant.status != GrantStatus.PENDING:
                    notes[grant.pk] = f"{grant.effective_status()}, not pending"
                elif grant.requested_duration:
                    notes[grant.pk] = f"asked for {format_duration(grant.requested_duration)}"
            return self.confirmation(
                request,
                grants,
                action="approve_selected",
                title="Approve access requests",
                question="Approve these requests? The agents can fetch the credential right away.",
                form=form,
                submit="Approve",
                notes=notes,
            )
        for grant in per_agent:
            messages.error(
                request,
                format_html(
                    "{}: the tool uses a credential per agent, so this request cannot be approved in bulk. "
                    '<a href="{}">Open it and approve it there</a> with the agent\'s credential.',
                    self.describe(grant),
                    self.approve_url(grant),
                ),
            )
        expires_at = approval_expiry(form.cleaned_data["duration"])
        recorded: list[str] = []

        def approve(grant: AccessGrant, actor: HumanActor) -> AccessGrant:
            decided = grant_approve(grant=grant, reviewer=actor, expires_at=expires_at)
            if decided.status == GrantStatus.PENDING:  # a quorum tool: this was one approval of several
                recorded.append(f"{self.describe(grant)} ({self.approvals_state(decided)})")
            return decided

        self.apply_each(
            request,
            [g for g in grants if g not in per_agent],
            approve,
            done="Approved {count} access request(s).",
        )
        if recorded:
            messages.info(
                request,
                "Your approval is recorded, and more approvers are needed before access opens: "
                + "; ".join(recorded),
            )
        return None

    @admin.action(description="Deny selected requests…", permissions=["decide"])
    def deny_selected(self, request: HttpRequest, queryset: QuerySet[AccessGrant]) -> TemplateResponse | None:
        grants = self.selection(request, queryset)
        if not grants:
            return None
        form = DenyForm(request.POST if request.POST.get("apply") else None)
        if not (form.is_bound and form.is_valid()):
            return self.confirmation(
                request,
                grants,
                action="deny_selected",
                title="Deny access requests",
                question="Deny these requests? Each agent sees the reason.",
                form=form,
                submit="Deny",
            )
        reason = form.cleaned_data["reason"]
        self.apply_each(
            request,
            grants,
            lambda grant, actor: grant_deny(grant=grant, reviewer=actor, reason=reason),
            done="Denied {count} access request(s).",
        )
        return None

    @admin.action(description="Revoke selected access…", permissions=["decide"])
    def revoke_selected(
        self, request: HttpRequest, queryset: QuerySet[AccessGrant]
    ) -> TemplateResponse | None:
        grants = self.selection(request, queryset)
        if not grants:
            return None
        form = RevokeForm(request.POST if request.POST.get("apply") else None)
        if not (form.is_bound and form.is_valid()):
            return self.confirmation(
                request,
                grants,
                action="revoke_selected",
                title="Revoke access",
                question="Revoke this access? The agents' very next credential fetch is refused.",
                form=form,
                submit="Revoke",
            )
        reason = form.cleaned_data["reason"]
        self.apply_each(
            request,
            grants,
            lambda grant, actor: grant_revoke(grant=grant, actor=actor, reason=reason),
            done="Revoked {count} grant(s).",
        )
        return None


@admin.register(Alert)
class AlertAdmin(OrgScopedAdmin[Alert]):
    """Anomaly alerts, read-only: raised by the rules, acknowledged in the console. Alerts with
    no organization (refused keys nobody recognises) are listed for superusers only."""

    list_display = (
        "created_at",
        "severity",
        "rule",
        "summary",
        "agent_label",
        "source_address",
        "acknowledged_at",
    )
    list_filter = ("severity", "rule")
    list_select_related = ("org",)
    ordering = ("-created_at",)
    change_fields = (
        "org",
        "rule",
        "severity",
        "summary",
        "agent_label",
        "tool_label",
        "source_address",
        "details",
        "agent_suspended",
        "window_start",
        "created_at",
        "acknowledged_at",
        "acknowledged_by_label",
    )
