"""The anomaly kill switch on the Members page (its own small form next to the other settings)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path
from django.views.decorators.http import require_POST

from accounts.console import console_view, membership_required, report
from accounts.permissions import Capability
from accounts.services import org_set_anomaly_auto_suspend
from agentkey.core.errors import DomainError


class KillSwitchForm(forms.Form):
    anomaly_auto_suspend = forms.BooleanField(
        required=False,
        label="Suspend an agent as soon as an anomaly alert is raised about it",
        help_text="Off: alerts only. On: the agent is suspended at once (reactivate it on its page).",
    )


@console_view(Capability.MANAGE_ORG)
@require_POST
def org_kill_switch_view(request: HttpRequest) -> HttpResponse:
    membership = membership_required(request)
    form = KillSwitchForm(request.POST)
    form.is_valid()  # a missing checkbox is "off": the form cannot be invalid
    enabled = bool(form.cleaned_data.get("anomaly_auto_suspend"))
    try:
        org_set_anomaly_auto_suspend(org=membership.org, actor=membership, enabled=enabled)
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(
            request,
            "Kill switch on: an anomaly alert now suspends its agent at once."
            if enabled
            else "Kill switch off: anomaly alerts no longer suspend agents.",
        )
    return redirect("console:members")


urlpatterns = [path("orgs/kill-switch", org_kill_switch_view, name="org_kill_switch")]
