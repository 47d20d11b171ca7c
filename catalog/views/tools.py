"""Tools: health, editing and the shared credential.

The list, the tool page, creation and editing need grants (who has access,
backers' requests, access ended when a tool becomes a canary) and live in
``grants.views.tools``, with the forms defined here; the usage guide has its
own module (``catalog.views.guide``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters

from accounts.console import console_view, membership_required, report
from accounts.permissions import Capability
from agentkey.core.errors import DomainError
from catalog.models import MAX_REQUIRED_APPROVALS, AccessMode, AuthType, CredentialMode, InjectAs, Tool
from catalog.selectors import tools_for_org
from catalog.services import KEEP, Keep, tool_rotate_credential

EXPIRY_WARNING = timedelta(days=14)
ROTATION_DUE = timedelta(days=90)

MODE_SHORT: dict[str, str] = {CredentialMode.SHARED: "Shared", CredentialMode.PER_AGENT: "Per agent"}


# --- health ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Badge:
    label: str
    tone: str  # a pill class: danger | warn
    detail: str


def tool_health(tool: Tool, now: datetime) -> list[Badge]:
    """What needs a human's attention about a tool's credential.

    Rotation only concerns a shared credential that exists: a shared tool
    without one says "no credential", and per-agent credentials live on the
    grants, given at each approval.
    """
    badges = []
    shared = tool.credential_mode == CredentialMode.SHARED
    if shared and tool.secret_id is None:
        badges.append(
            Badge("no credential", "danger", "Approved agents cannot fetch anything until one is added.")
        )
    expires = tool.credential_expires_at
    if expires is not None and expires <= now:
        badges.append(Badge("credential expired", "danger", "The provider's credential has expired."))
    elif expires is not None and expires <= now + EXPIRY_WARNING:
        badges.append(Badge("expires within 14 days", "warn", "Rotate it before it stops working."))
    rotated = tool.credential_rotated_at
    if shared and tool.secret_id is not None and (rotated is None or rotated <= now - ROTATION_DUE):
        badges.append(
            Badge("not rotated in 90 days", "warn", "Long-lived credentials are worth replacing regularly.")
        )
    return badges


# --- credential expiry as a date -------------------------------------------------------------------


def day_start(day: date | None) -> datetime | None:
    return datetime.combine(day, time.min, tzinfo=UTC) if day is not None else None


def expiry_change(day: date | None, current: datetime | None) -> datetime | Keep | None:
    """The service argument for a date field showing ``current``: unchanged keeps the exact stored time."""
    if current is not None and day is not None and current.astimezone(UTC).date() == day:
        return KEEP
    return day_start(day)


def expiry_initial(current: datetime | None) -> date | None:
    return current.astimezone(UTC).date() if current is not None else None


class ExpiryField(forms.DateField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("label", "Credential expires on")
        kwargs.setdefault(
            "help_text", "Optional: when the provider's credential stops working (UTC). Empty: no expiry."
        )
        super().__init__(widget=forms.DateInput(attrs={"type": "date"}), **kwargs)


# --- proxy mode (docs/proxy.md) ----------------------------------------------------------------------


class ProxyFields(forms.Form):
    """How agents use the credential: fetched (vend) or only through the proxy. The catalog
    services validate (the origin against the SSRF rules); refusals land on these fields."""

    access_mode = forms.ChoiceField(
        required=False,
        choices=AccessMode.choices,
        initial=AccessMode.VEND,
        label="How agents use the credential",
        widget=forms.RadioSelect,
    )
    upstream_origin = forms.CharField(
        required=False,
        max_length=300,
        label="Upstream origin",
        help_text="Proxy mode: the API's https://host[:port] (no path). Agents' calls go there and nowhere else.",
    )
    inject_as = forms.ChoiceField(
        required=False, choices=InjectAs.choices, initial=InjectAs.HEADER, label="Send the credential as"
    )
    inject_name = forms.CharField(
        required=False,
        max_length=100,
        initial="Authorization",
        label="Header or parameter name",
        help_text="Such as Authorization, X-Api-Key or api_key.",
    )
    inject_template = forms.CharField(
        required=False,
        max_length=200,
        initial="Bearer {credential}",
        label="Header value",
        help_text="Header mode: {credential} is replaced by the credential, such as Bearer {credential}.",
    )

    def proxy_values(self) -> dict[str, str]:
        """The proxy fields that were posted: one left out keeps its default (create) or stored value (edit)."""
        data = self.cleaned_data
        choices = ("access_mode", "inject_as")
        return {n: data[n] for n in PROXY_FIELDS if n in self.data and (data[n] or n not in choices)}


PROXY_FIELDS = ("access_mode", "upstream_origin", "inject_as", "inject_name", "inject_template")


# --- approvals (N-of-M, separation of duties: docs/governance.md) -----------------------------------


class ApprovalFields(forms.Form):
    """How many distinct people must approve access, and who may not. The database refuses 0."""

    required_approvals = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_REQUIRED_APPROVALS,
        initial=1,
        label="Approvals required",
        help_text=f"Distinct people who must approve each request (1 to {MAX_REQUIRED_APPROVALS}). "
        "Access opens only once that many have approved.",
        error_messages={
            "min_value": "At least 1: access is never open without an approval.",
            "max_value": f"At most {MAX_REQUIRED_APPROVALS} approvers.",
        },
        widget=forms.NumberInput(attrs={"min": 1, "max": MAX_REQUIRED_APPROVALS}),
    )
    separation_of_duties = forms.BooleanField(
        required=False,
        label="Separation of duties",
        help_text="Neither the agent's creator or owner nor this tool's owner may approve access to it.",
    )
    #: Set by the template, so an unticked box (absent from the POST) is told from a form without it.
    approval_fields = forms.CharField(required=False, widget=forms.HiddenInput, initial="1")

    def approval_values(self) -> dict[str, Any]:
        """The approval fields that were posted: one left out keeps its default (create) or stored value (edit)."""
        data, values = self.cleaned_data, {}
        if data.get("required_approvals") is not None:
            values["required_approvals"] = data["required_approvals"]
        if data.get("approval_fields"):
            values["separation_of_duties"] = data["separation_of_duties"]
        return values


def approval_initial(tool: Tool) -> dict[str, Any]:
    return {"required_approvals": tool.required_approvals, "separation_of_duties": tool.separation_of_duties}


def proxy_initial(tool: Tool) -> dict[str, str]:
    return {name: getattr(tool, name) for name in PROXY_FIELDS}


def show_refusal(request: HttpRequest, form: forms.Form, exc: DomainError) -> None:
    """A refusal about a field of the form is shown on that field; anything else as a message."""
    placed = False
    for detail in exc.details:
        if detail.field in form.fields:
            form.add_error(detail.field, f"{exc.error} {exc.hint}" if not placed else detail.message)
            placed = True
    if not placed:
        report(request, exc)


# --- edit ------------------------------------------------------------------------------------------


class ToolEditForm(ApprovalFields, ProxyFields):
    name = forms.CharField(max_length=120)
    url = forms.CharField(required=False, max_length=500, label="Website URL")
    description = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))
    auth_type = forms.ChoiceField(choices=AuthType.choices, label="Credential type")
    credential_expires_on = ExpiryField()
    is_canary = forms.BooleanField(
        required=False,
        label="Canary tool (a decoy)",
        help_text="No agent should ever ask for it: any request or suggestion for it raises a high alert "
        "(a sign of prompt injection). Agents see an ordinary tool; it can never be approved. "
        "Marking a tool revokes every approved or pending access to it.",
    )


def managed_tool(request: HttpRequest, tool_id: uuid.UUID) -> Tool:
    """A tool of the active organization, or 404."""
    org_id = membership_required(request).org_id
    return get_object_or_404(tools_for_org(org_id), id=tool_id)


# --- rotate the shared credential ------------------------------------------------------------------


class RotateForm(forms.Form):
    credential = forms.CharField(
        label="New credential",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted; never shown again. Agents get it on their very next fetch.",
    )
    credential_expires_on = ExpiryField()


@sensitive_post_parameters("credential")
@console_view(Capability.MANAGE_TOOLS)
def tool_rotate_view(request: HttpRequest, tool_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    tool = managed_tool(request, tool_id)
    if tool.credential_mode != CredentialMode.SHARED:
        raise Http404("Per-agent tools have no tool credential.")
    form = RotateForm(
        request.POST if request.method == "POST" else None,
        initial={"credential_expires_on": expiry_initial(tool.credential_expires_at)},
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        first = tool.secret_id is None
        try:
            tool_rotate_credential(
                tool=tool,
                actor=membership,
                credential=data["credential"],
                expires_at=expiry_change(data["credential_expires_on"], tool.credential_expires_at),
            )
        except DomainError as exc:
            report(request, exc)
        else:
            done = "added" if first else "replaced"
            messages.success(
                request, f"Credential of {tool.name} {done}. The next fetch returns the new one."
            )
            return redirect("console:tool", tool_id=tool.id)
    return render(
        request,
        "console/tool/rotate.html",
        {"section": "tools", "tool": tool, "form": form, "health": tool_health(tool, timezone.now())},
    )


urlpatterns = [
    path("tools/<uuid:tool_id>/rotate", tool_rotate_view, name="tool_rotate"),
]
