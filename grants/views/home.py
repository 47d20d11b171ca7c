"""The console home: what needs attention, and the onboarding checklist for a new organization."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path

from accounts.console import console_view, membership_of, membership_required
from accounts.models import Agent
from catalog.models import Tool
from grants.selectors import pending_grants_for_org
from notifications.selectors import endpoints_for_org


def home_view(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("account_login")
    if membership_of(request) is None:
        return redirect("console:org_create")
    return _home(request)


@console_view()
def _home(request: HttpRequest) -> HttpResponse:
    org = membership_required(request).org
    steps = [
        ("Create an agent", Agent.objects.filter(org=org).exists(), "console:agent_create"),
        ("Add a tool", Tool.objects.filter(org=org).exists(), "console:tool_create"),
        ("Connect a notification channel", endpoints_for_org(org.id).exists(), "console:notifications"),
    ]
    return render(
        request,
        "console/home.html",
        {
            "section": "home",
            "steps": steps,
            "onboarding_done": all(done for _, done, _ in steps),
            "pending": pending_grants_for_org(org.id).count(),
        },
    )


urlpatterns = [path("", home_view, name="home")]
