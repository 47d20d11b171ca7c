"""Agents: create (key shown once + snippets), rotate key, suspend / reactivate.

The list and the agent's page need grants and the audit log: they live in
``grants.views.agents``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts.console import console_view, membership_required, report
from accounts.lifecycle import agent_set_owner, agent_set_valid_until
from accounts.models import Agent, User
from accounts.permissions import Capability
from accounts.selectors import agents_for_org
from accounts.services import agent_create, agent_key_rotate, agent_reactivate, agent_suspend
from accounts.snippets import ENV_KEY, ENV_URL, agent_snippets
from agentkey.core.errors import DomainError

# How long the old key keeps working after a rotation (the service allows up to 30 days).
GRACE_PERIODS: dict[str, tuple[timedelta | None, str]] = {
    "none": (None, "No grace: the old key stops now"),
    "1h": (timedelta(hours=1), "1 hour"),
    "1d": (timedelta(days=1), "1 day"),
    "7d": (timedelta(days=7), "7 days"),
}


class AgentForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="How the agent is known here, e.g. Onboarding-Agent.")
    description = forms.CharField(
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What it does, for approvers.",
    )

    def __init__(self, *args: Any, org_id: uuid.UUID, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Optional: without a choice the person creating the agent owns it.
        self.fields["owner"] = owner_field(org_id, required=False)
        self.fields["valid_until"] = valid_until_field()


class OwnerForm(forms.Form):
    def __init__(self, *args: Any, org_id: uuid.UUID, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["owner"] = owner_field(org_id)


class ValidityForm(forms.Form):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["valid_until"] = valid_until_field()


def _members(org_id: uuid.UUID) -> QuerySet[User]:
    return User.objects.filter(memberships__org_id=org_id).order_by("email")


class OwnerChoice(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.email)


def owner_field(org_id: uuid.UUID, *, required: bool = True) -> OwnerChoice:
    return OwnerChoice(
        queryset=_members(org_id),
        required=required,
        empty_label=None,
        label="Owner",
        help_text="The member accountable for this agent. If they leave the organization, the agent "
        "is suspended or reassigned (the organization's policy on the Members page).",
    )


def valid_until_field() -> forms.DateTimeField:
    return forms.DateTimeField(
        required=False,
        label="Valid until (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Optional. After this moment its keys are refused and it is suspended. "
        "Leave empty for no end.",
    )


class RotateForm(forms.Form):
    grace = forms.ChoiceField(
        label="The old key keeps working for",
        choices=[(value, label) for value, (_, label) in GRACE_PERIODS.items()],
        initial="none",
        help_text="A grace period lets you deploy the new key before the old one stops.",
    )


def key_page(
    request: HttpRequest,
    *,
    agent: Agent,
    plaintext: str,
    rotated: bool = False,
    old_key_until: datetime | None = None,
) -> HttpResponse:
    """The one response that shows an agent key: rendered from the request that minted it.

    Never through a redirect, a message or the session, so a reload cannot show
    it again; callers are ``never_cache``.
    """
    public_url = settings.AGENTKEY_PUBLIC_URL
    return render(
        request,
        "console/agent_key.html",
        {
            "section": "agents",
            "agent": agent,
            "api_key": plaintext,
            "public_url": public_url,
            "env_key": ENV_KEY,
            "env_url": ENV_URL,
            "snippets": agent_snippets(public_url=public_url, agent_name=agent.name),
            "rotated": rotated,
            "old_key_until": old_key_until,
        },
    )


@never_cache
@console_view(Capability.MANAGE_AGENTS)
def agent_create_view(request: HttpRequest) -> HttpResponse:
    """Create an agent; its key is shown on this response only (never stored, never in a message)."""
    membership = membership_required(request)
    form = AgentForm(
        request.POST if request.method == "POST" else None,
        org_id=membership.org_id,
        initial={"owner": membership.user_id},
    )
    if request.method == "POST" and form.is_valid():
        try:
            issued = agent_create(
                org=membership.org,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                actor=membership,
                owner=form.cleaned_data["owner"],
                valid_until=form.cleaned_data["valid_until"],
            )
        except DomainError as exc:
            report(request, exc)
        else:
            return key_page(request, agent=issued.agent, plaintext=issued.key.plaintext)
    return render(request, "console/agent_create.html", {"section": "agents", "form": form})


def _agent(request: HttpRequest, agent_id: uuid.UUID) -> Agent:
    return get_object_or_404(agents_for_org(membership_required(request).org_id), id=agent_id)


@never_cache
@console_view(Capability.MANAGE_AGENTS)
@require_POST
def agent_rotate_view(request: HttpRequest, agent_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    agent = _agent(request, agent_id)
    form = RotateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose how long the old key keeps working.")
        return redirect("console:agent", agent_id=agent.id)
    grace = GRACE_PERIODS[form.cleaned_data["grace"]][0]
    try:
        issued = agent_key_rotate(agent=agent, actor=membership, grace=grace)
    except DomainError as exc:
        report(request, exc)
        return redirect("console:agent", agent_id=agent.id)
    return key_page(
        request,
        agent=agent,
        plaintext=issued.plaintext,
        rotated=True,
        old_key_until=issued.previous_keys_end if grace else None,
    )


@console_view(Capability.MANAGE_AGENTS)
@require_POST
def agent_suspend_view(request: HttpRequest, agent_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    agent = _agent(request, agent_id)
    try:
        agent_suspend(agent=agent, actor=membership, reason=request.POST.get("reason", "")[:500])
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(request, f"{agent.name} is suspended: its keys are refused until you reactivate it.")
    return redirect("console:agent", agent_id=agent.id)


@console_view(Capability.MANAGE_AGENTS)
@require_POST
def agent_reactivate_view(request: HttpRequest, agent_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    agent = _agent(request, agent_id)
    try:
        agent_reactivate(agent=agent, actor=membership)
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(request, f"{agent.name} is active again: its keys work and its grants apply.")
    return redirect("console:agent", agent_id=agent.id)


@console_view(Capability.MANAGE_AGENTS)
@require_POST
def agent_owner_view(request: HttpRequest, agent_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    agent = _agent(request, agent_id)
    form = OwnerForm(request.POST, org_id=membership.org_id)
    if not form.is_valid():
        messages.error(request, "Choose the new owner among the organization's members.")
        return redirect("console:agent", agent_id=agent.id)
    try:
        agent_set_owner(agent=agent, owner=form.cleaned_data["owner"], actor=membership)
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(request, f"{form.cleaned_data['owner'].email} now owns {agent.name}.")
    return redirect("console:agent", agent_id=agent.id)


@console_view(Capability.MANAGE_AGENTS)
@require_POST
def agent_valid_until_view(request: HttpRequest, agent_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    agent = _agent(request, agent_id)
    form = ValidityForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Enter a date and time (UTC) such as 2030-01-31 18:00, or leave it empty.")
        return redirect("console:agent", agent_id=agent.id)
    valid_until = None if "clear" in request.POST else form.cleaned_data["valid_until"]
    try:
        agent_set_valid_until(agent=agent, valid_until=valid_until, actor=membership)
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(
            request,
            f"{agent.name} is valid until {valid_until:%Y-%m-%d %H:%M} UTC."
            if valid_until
            else f"{agent.name} has no end of validity now.",
        )
    return redirect("console:agent", agent_id=agent.id)


urlpatterns = [
    path("agents/new", agent_create_view, name="agent_create"),
    path("agents/<uuid:agent_id>/owner", agent_owner_view, name="agent_owner"),
    path("agents/<uuid:agent_id>/valid-until", agent_valid_until_view, name="agent_valid_until"),
    path("agents/<uuid:agent_id>/rotate-key", agent_rotate_view, name="agent_rotate"),
    path("agents/<uuid:agent_id>/suspend", agent_suspend_view, name="agent_suspend"),
    path("agents/<uuid:agent_id>/reactivate", agent_reactivate_view, name="agent_reactivate"),
]
