"""Tool pages that need grants: the list (who has access), creation (backers' requests), the tool
page, editing (marking a tool as a canary ends its access)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import Count, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce, Lower
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters

from accounts.console import can, console_view, membership_required
from accounts.permissions import Capability
from agentkey.core.errors import DomainError
from audit.models import AuditEvent
from catalog.ascode import ToolSpec, template_library
from catalog.drafts.selectors import finished_draft_for_prefill
from catalog.models import (
    AuthType,
    CredentialMode,
    GuideSuggestion,
    SuggestionBacker,
    SuggestionStatus,
    Tool,
    ToolSuggestion,
)
from catalog.selectors import pending_suggestions_for_org, tools_for_org
from catalog.views.guide import pending_guide_suggestions
from catalog.views.tools import (
    MODE_SHORT,
    ApprovalFields,
    Badge,
    ExpiryField,
    ProxyFields,
    ToolEditForm,
    approval_initial,
    day_start,
    expiry_change,
    expiry_initial,
    managed_tool,
    proxy_initial,
    show_refusal,
    tool_health,
)
from grants.models import AccessGrant, GrantStatus
from grants.selectors import grants_for_org
from grants.services import tool_add, tool_edit

ACTIVITY_LIMIT = 25
# How the access table is ordered: who can fetch now first, then who is waiting, then history.
STATUS_ORDER: dict[str, int] = {
    GrantStatus.APPROVED: 0,
    GrantStatus.PENDING: 1,
    GrantStatus.EXPIRED: 2,
    GrantStatus.REVOKED: 3,
    GrantStatus.DENIED: 4,
}

CREDENTIAL_MISSING = "Enter the credential, or tick “Add the credential later”."
CREDENTIAL_PER_AGENT = (
    "Per-agent tools take no credential here: each agent's credential is given when its request is approved."
)
EXPIRY_PAST = "The expiry date is in the past."


# --- the list --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolRow:
    tool: Tool
    mode: str
    approved_agents: int
    guide_suggestions: int
    health: list[Badge]


def _count_per_tool(rows: QuerySet[Any]) -> Coalesce:
    """A correlated COUNT for each tool row: no join fan-out, no query per tool."""
    counted = rows.filter(tool_id=OuterRef("pk")).order_by().values("tool_id").annotate(n=Count("pk"))
    return Coalesce(Subquery(counted.values("n")[:1], output_field=IntegerField()), 0)


def tool_rows(org_id: uuid.UUID) -> list[ToolRow]:
    """Every tool of the organization with its health and demand. One query."""
    now = timezone.now()
    live = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    tools = (
        tools_for_org(org_id)
        .defer("usage_guide", "description")
        .annotate(
            approved_agents=_count_per_tool(AccessGrant.objects.filter(live, status=GrantStatus.APPROVED)),
            pending_guide_suggestions=_count_per_tool(
                GuideSuggestion.objects.filter(status=SuggestionStatus.PENDING)
            ),
        )
        .order_by(Lower("name"), "id")
    )
    return [
        ToolRow(
            tool=t,
            mode=MODE_SHORT.get(t.credential_mode, t.credential_mode),
            approved_agents=t.approved_agents,
            guide_suggestions=t.pending_guide_suggestions,
            health=tool_health(t, now),
        )
        for t in tools
    ]


@console_view()
def tools_view(request: HttpRequest) -> HttpResponse:
    org_id = membership_required(request).org_id
    return render(request, "console/tools.html", {"section": "tools", "rows": tool_rows(org_id)})


# --- create ----------------------------------------------------------------------------------------


class ToolForm(ApprovalFields, ProxyFields):
    name = forms.CharField(max_length=120)
    url = forms.CharField(required=False, max_length=500, label="Website URL")
    description = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))
    auth_type = forms.ChoiceField(choices=AuthType.choices, label="Credential type")
    credential_mode = forms.ChoiceField(choices=CredentialMode.choices, label="Who uses which credential")
    credential = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Shared tools only. Stored encrypted; never shown again (re-enter it if this form comes back).",
    )
    credential_later = forms.BooleanField(
        required=False,
        label="Add the credential later",
        help_text="Agents can be approved, but cannot fetch anything until you add it.",
    )
    credential_expires_on = ExpiryField()
    usage_guide = forms.CharField(
        required=False,
        max_length=20000,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="Sent to agents with the credential: base URL, team ids, conventions.",
    )
    config_key = forms.CharField(
        required=False,
        max_length=80,
        label="Config key",
        help_text="Optional stable key for catalog-as-code (a slug such as linear). Made from the name if empty.",
    )
    is_canary = forms.BooleanField(
        required=False,
        label="Canary tool (a decoy)",
        help_text="No agent should ever ask for it: any request or suggestion for it raises a high alert "
        "(a sign of prompt injection). Agents see an ordinary tool; it can never be approved.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        mode, credential = data.get("credential_mode"), data.get("credential")
        if mode == CredentialMode.SHARED and not credential and not data.get("credential_later"):
            self.add_error("credential", CREDENTIAL_MISSING)
        if mode == CredentialMode.PER_AGENT and credential:
            self.add_error("credential", CREDENTIAL_PER_AGENT)
        expires_on = data.get("credential_expires_on")
        if expires_on is not None and expires_on < timezone.now().date():
            self.add_error("credential_expires_on", EXPIRY_PAST)
        return data


def backed_by(backers: list[SuggestionBacker]) -> str:
    """ "Onboarding-Agent + 2 others": the first backer and how many joined."""
    if not backers:
        return "No agent"
    others = len(backers) - 1
    first = backers[0].agent.name
    return first if not others else f"{first} + {others} other{'s' if others > 1 else ''}"


def _suggestion(request: HttpRequest, org_id: uuid.UUID) -> ToolSuggestion | None:
    """The pending suggestion of this organization that ?suggestion= names, or None; 404 if not found."""
    raw = request.GET.get("suggestion")
    if not raw:
        return None
    try:
        suggestion_id = uuid.UUID(raw)
    except ValueError:
        raise Http404("No such suggestion.") from None
    backers = SuggestionBacker.objects.select_related("agent").order_by("created_at", "id")
    return get_object_or_404(
        pending_suggestions_for_org(org_id).prefetch_related(
            Prefetch("backers", queryset=backers, to_attr="backer_list")
        ),
        id=suggestion_id,
    )


@sensitive_post_parameters("credential")
@console_view(Capability.MANAGE_TOOLS)
def tool_create_view(request: HttpRequest) -> HttpResponse:
    membership = membership_required(request)
    suggestion = _suggestion(request, membership.org_id)
    initial: dict[str, Any] = {"name": suggestion.name, "url": suggestion.url} if suggestion else {}
    # "Start from a template" (?template=github): the built-in library prefills the form.
    template = _template(request)
    if template is not None:
        initial.update(template.as_dict())
    # A finished AI guide draft (?draft=) prefills the usage guide for review (catalog.drafts).
    draft = finished_draft_for_prefill(membership.org_id, request.GET.get("draft"))
    if draft is not None:
        initial["usage_guide"] = draft.content
    form = ToolForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        per_agent = data["credential_mode"] == CredentialMode.PER_AGENT
        try:
            created = tool_add(
                org=membership.org,
                actor=membership,
                suggestion=suggestion,
                name=data["name"],
                url=data["url"],
                description=data["description"],
                auth_type=data["auth_type"],
                credential_mode=data["credential_mode"],
                credential=None if per_agent else (data["credential"] or None),
                usage_guide=data["usage_guide"],
                config_key=data["config_key"],
                credential_expires_at=day_start(data["credential_expires_on"]),
                is_canary=data["is_canary"],
                **form.proxy_values(),
                **form.approval_values(),
            )
        except DomainError as exc:
            show_refusal(request, form, exc)
        else:
            tool = created.tool
            waiting = grants_for_org(membership.org_id).filter(tool=tool, status=GrantStatus.PENDING).count()
            done = f"{tool.name} added to the catalog."
            if waiting:
                done += f" {waiting} agent{'s' if waiting > 1 else ''} that asked for it now wait{'' if waiting > 1 else 's'} in the inbox."
            messages.success(request, done)
            if suggestion is not None and suggestion.id not in {x.id for x in created.accepted}:
                messages.warning(request, "The suggestion was decided meanwhile; it was left as it is.")
            return redirect("console:tool", tool_id=tool.id)
    backers: list[SuggestionBacker] = getattr(suggestion, "backer_list", [])
    return render(
        request,
        "console/tool_form.html",
        {
            "section": "tools",
            "form": form,
            "suggestion": suggestion,
            "backers": backers,
            "backed_by": backed_by(backers),
            "draft": draft,
            "template": template,
            "templates": sorted(template_library().values(), key=lambda t: t.values["name"].lower()),
        },
    )


def _template(request: HttpRequest) -> ToolSpec | None:
    """The built-in template that ?template= names, or None; 404 if there is no such template."""
    key = request.GET.get("template")
    if not key:
        return None
    template = template_library().get(key)
    if template is None:
        raise Http404("No such template.")
    return template


# --- the tool page ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    grant: AccessGrant
    status: str  # effective: an approval past its expiry reads "expired"

    @property
    def can_revoke(self) -> bool:
        return self.status == GrantStatus.APPROVED


def access_rows(tool: Tool, org_id: uuid.UUID) -> list[Access]:
    now = timezone.now()
    grants = grants_for_org(org_id).filter(tool_id=tool.id).select_related("agent")
    rows = [Access(g, g.effective_status(now)) for g in grants]
    rows.sort(key=lambda a: (STATUS_ORDER.get(a.status, 9), a.grant.agent.name.lower()))
    return rows


@console_view()
def tool_view(request: HttpRequest, tool_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    tool = get_object_or_404(tools_for_org(membership.org_id).select_related("created_by"), id=tool_id)
    access = access_rows(tool, membership.org_id)
    suggestions = list(pending_guide_suggestions(tool).annotate(backer_count=Count("backers")))
    activity: list[AuditEvent] = []
    if can(membership, Capability.READ_AUDIT):
        activity = list(
            AuditEvent.objects.filter(org_id=membership.org_id, tool_id=tool.id).order_by("-id")[
                :ACTIVITY_LIMIT
            ]
        )
    return render(
        request,
        "console/tool.html",
        {
            "section": "tools",
            "tool": tool,
            "mode": MODE_SHORT.get(tool.credential_mode, tool.credential_mode),
            "shared": tool.credential_mode == CredentialMode.SHARED,
            "health": tool_health(tool, timezone.now()),
            "access": access,
            "approved_count": sum(1 for a in access if a.status == GrantStatus.APPROVED),
            "pending_count": sum(1 for a in access if a.status == GrantStatus.PENDING),
            "guide_suggestions": suggestions,
            "activity": activity,
            "activity_limit": ACTIVITY_LIMIT,
        },
    )


# --- edit ------------------------------------------------------------------------------------------


@console_view(Capability.MANAGE_TOOLS)
def tool_edit_view(request: HttpRequest, tool_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    tool = managed_tool(request, tool_id)
    initial = {
        "name": tool.name,
        "url": tool.url,
        "description": tool.description,
        "auth_type": tool.auth_type,
        "credential_expires_on": expiry_initial(tool.credential_expires_at),
        "is_canary": tool.is_canary,
        **proxy_initial(tool),
        **approval_initial(tool),
    }
    form = ToolEditForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        changes: dict[str, Any] = {**form.proxy_values(), **form.approval_values()}
        try:
            tool_edit(
                tool=tool,
                actor=membership,
                name=data["name"],
                url=data["url"],
                description=data["description"],
                auth_type=data["auth_type"],
                credential_expires_at=expiry_change(
                    data["credential_expires_on"], tool.credential_expires_at
                ),
                is_canary=data["is_canary"],
                **changes,
            )
        except DomainError as exc:
            show_refusal(request, form, exc)
        else:
            messages.success(request, f"{tool.name} saved.")
            return redirect("console:tool", tool_id=tool.id)
    return render(
        request,
        "console/tool/edit.html",
        {"section": "tools", "tool": tool, "form": form, "mode": MODE_SHORT.get(tool.credential_mode, "")},
    )


urlpatterns = [
    path("tools/", tools_view, name="tools"),
    path("tools/new", tool_create_view, name="tool_create"),
    path("tools/<uuid:tool_id>/", tool_view, name="tool"),
    path("tools/<uuid:tool_id>/edit", tool_edit_view, name="tool_edit"),
]
