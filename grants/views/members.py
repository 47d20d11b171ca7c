"""Removing a member, or leaving: here rather than in ``accounts.views.orgs`` because it also
suspends or reassigns the agents the person owned and notifies (``grants.lifecycle``)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path
from django.views.decorators.http import require_POST

from accounts.console import console_view, membership_required, report
from accounts.lifecycle import REASSIGNED
from accounts.models import Membership
from agentkey.core.errors import DomainError
from grants.lifecycle import member_remove


@console_view()
@require_POST
def member_remove_view(request: HttpRequest, member_id: int) -> HttpResponse:
    membership = membership_required(request)
    target = get_object_or_404(Membership.objects.select_related("user"), id=member_id, org=membership.org)
    leaving = target.pk == membership.pk
    try:
        departed = member_remove(membership=target, actor=membership)
    except DomainError as exc:
        report(request, exc)
        return redirect("console:members")
    for agent in departed:
        if agent.outcome == REASSIGNED:
            messages.info(request, f"{agent.agent_name} now belongs to {agent.new_owner}.")
        else:
            messages.info(request, f"{agent.agent_name} is suspended: its owner left.")
    if leaving:
        request.session.pop("agentkey_org", None)
        messages.success(request, f"You left {membership.org.name}.")
        return redirect("console:home")
    messages.success(request, f"{target.user.email} was removed.")
    return redirect("console:members")


urlpatterns = [
    path("members/<int:member_id>/remove", member_remove_view, name="member_remove"),
]
