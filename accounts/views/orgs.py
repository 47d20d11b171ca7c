"""Organizations, members and invitations."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from accounts.console import (
    console_view,
    membership_of,
    membership_required,
    report,
    signed_in,
    switch_organization,
)
from accounts.lifecycle import org_set_lifecycle_policy
from accounts.members import (
    invitation_accept,
    invitation_by_token,
    invitation_create,
    invitation_revoke,
    membership_change_role,
)
from accounts.models import Invitation, Membership, OwnerDeparture, Role
from accounts.permissions import Capability
from accounts.services import org_create, org_set_max_grant_duration
from agentkey.core.durations import human_duration
from agentkey.core.errors import DomainError


class OrgForm(forms.Form):
    name = forms.CharField(max_length=120, label="Organization name", help_text="Your company or team.")


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email address")
    role = forms.ChoiceField(
        choices=Role.choices,
        initial=Role.APPROVER,
        help_text="Owner: everything, members. Admin: agents, tools, decisions. "
        "Approver: decide requests, revoke. Auditor: read and export the audit log.",
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


# The maximum grant durations offered in the console ("" is no maximum).
MAX_GRANT_DURATIONS: dict[str, tuple[timedelta | None, str]] = {
    "": (None, "No maximum"),
    "1h": (timedelta(hours=1), "1 h"),
    "8h": (timedelta(hours=8), "8 h"),
    "1d": (timedelta(days=1), "1 d"),
    "7d": (timedelta(days=7), "7 d"),
    "30d": (timedelta(days=30), "30 d"),
}


class AccessPolicyForm(forms.Form):
    max_grant_duration = forms.ChoiceField(
        required=False,
        label="Longest access an approval can give",
        choices=[(key, label) for key, (_, label) in MAX_GRANT_DURATIONS.items()],
        help_text="Approvals, direct assignments and extensions never go beyond it, and no expiry is "
        "not offered while it is set. Access already granted keeps its expiry.",
    )


# Access-review choices offered in the console ("" is off) and grace periods.
REVIEW_AFTER: dict[str, tuple[timedelta | None, str]] = {
    "": (None, "Off"),
    "30d": (timedelta(days=30), "30 days"),
    "90d": (timedelta(days=90), "90 days"),
    "180d": (timedelta(days=180), "180 days"),
    "365d": (timedelta(days=365), "365 days"),
}
REVIEW_GRACE: dict[str, tuple[timedelta, str]] = {
    "1d": (timedelta(days=1), "1 day"),
    "7d": (timedelta(days=7), "7 days"),
    "14d": (timedelta(days=14), "14 days"),
    "30d": (timedelta(days=30), "30 days"),
}


class LifecyclePolicyForm(forms.Form):
    owner_departure = forms.ChoiceField(
        label="When an agent's owner leaves the organization",
        choices=OwnerDeparture.choices,
        help_text="Reassign gives the agent to the person removing the owner (if an owner or admin), "
        "otherwise to the longest-standing owner.",
    )
    access_review_after = forms.ChoiceField(
        required=False,
        label="Review access older than",
        choices=[(key, label) for key, (_, label) in REVIEW_AFTER.items()],
        help_text="Approved access not approved or recertified for this long enters the review queue.",
    )
    access_review_grace = forms.ChoiceField(
        label="Revoke unreviewed access after",
        choices=[(key, label) for key, (_, label) in REVIEW_GRACE.items()],
        help_text="Access nobody recertifies within this time after its review opened is revoked.",
    )


def _choice_key(choices: Mapping[str, tuple[timedelta | None, str]], value: timedelta | None) -> str | None:
    return next((key for key, (duration, _) in choices.items() if duration == value), None)


def _policy_key(value: timedelta | None) -> str | None:
    """The form choice for a stored maximum (None when it is not one of the console's choices)."""
    return next((key for key, (duration, _) in MAX_GRANT_DURATIONS.items() if duration == value), None)


@login_required
def org_create_view(request: HttpRequest) -> HttpResponse:
    form = OrgForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            org = org_create(name=form.cleaned_data["name"], owner=signed_in(request))
        except DomainError as exc:
            report(request, exc)
        else:
            switch_organization(
                request,
                Membership.objects.select_related("org", "user").get(org=org, user=signed_in(request)),
            )
            messages.success(request, f"{org.name} is ready. Next: create your first agent.")
            return redirect("console:home")
    first = membership_of(request) is None
    return render(request, "console/org_create.html", {"form": form, "first": first})


@login_required
@require_POST
def org_switch_view(request: HttpRequest) -> HttpResponse:
    try:
        org_id = uuid.UUID(request.POST.get("org", ""))
    except ValueError:
        return redirect("console:home")
    membership = (
        Membership.objects.select_related("org", "user")
        .filter(user=signed_in(request), org_id=org_id)
        .first()
    )
    if membership is not None:
        switch_organization(request, membership)
    return redirect("console:home")


@console_view()
def members_view(request: HttpRequest) -> HttpResponse:
    membership = membership_required(request)
    members = Membership.objects.filter(org=membership.org).select_related("user").order_by("user__email")
    invitations = Invitation.objects.filter(
        org=membership.org, accepted_at__isnull=True, revoked_at__isnull=True
    ).select_related("invited_by")
    return render(
        request,
        "console/members.html",
        {
            "section": "members",
            "members": members,
            "invitations": [i for i in invitations if i.is_open()],
            "invite_form": InviteForm(),
            "roles": Role.choices,
            "policy_form": AccessPolicyForm(
                initial={"max_grant_duration": _policy_key(membership.org.max_grant_duration)}
            ),
            "lifecycle_form": LifecyclePolicyForm(
                initial={
                    "owner_departure": membership.org.owner_departure,
                    "access_review_after": _choice_key(REVIEW_AFTER, membership.org.access_review_after),
                    "access_review_grace": _choice_key(REVIEW_GRACE, membership.org.access_review_grace),
                }
            ),
            "max_grant_duration": membership.org.max_grant_duration,
            "max_grant_duration_label": human_duration(membership.org.max_grant_duration)
            if membership.org.max_grant_duration
            else "",
        },
    )


@console_view(Capability.MANAGE_ORG)
@require_POST
def org_settings_view(request: HttpRequest) -> HttpResponse:
    """The organization's access policy (owners and admins); the service audits the change."""
    membership = membership_required(request)
    form = AccessPolicyForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a maximum grant duration from the list (1 h to 30 d), or no maximum.")
        return redirect("console:members")
    value, label = MAX_GRANT_DURATIONS[form.cleaned_data["max_grant_duration"]]
    try:
        org_set_max_grant_duration(org=membership.org, actor=membership, max_grant_duration=value)
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(
            request,
            f"Access in {membership.org.name} now lasts at most {label}."
            if value is not None
            else f"Access in {membership.org.name} has no maximum duration now.",
        )
    return redirect("console:members")


@console_view(Capability.MANAGE_ORG)
@require_POST
def org_lifecycle_view(request: HttpRequest) -> HttpResponse:
    """Owner departure and access reviews (owners and admins); the service audits each change."""
    membership = membership_required(request)
    form = LifecyclePolicyForm(request.POST)
    if not form.is_valid():
        messages.error(
            request, "Choose the owner-departure policy, review age and grace period from the lists."
        )
        return redirect("console:members")
    try:
        org = org_set_lifecycle_policy(
            org=membership.org,
            actor=membership,
            owner_departure=form.cleaned_data["owner_departure"],
            access_review_after=REVIEW_AFTER[form.cleaned_data["access_review_after"]][0],
            access_review_grace=REVIEW_GRACE[form.cleaned_data["access_review_grace"]][0],
        )
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(request, f"Agent lifecycle and access reviews saved for {org.name}.")
    return redirect("console:members")


@console_view(Capability.MANAGE_MEMBERS)
@require_POST
def member_invite_view(request: HttpRequest) -> HttpResponse:
    membership = membership_required(request)
    form = InviteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Enter a valid email address and role.")
        return redirect("console:members")
    try:
        issued = invitation_create(
            org=membership.org,
            email=form.cleaned_data["email"],
            role=form.cleaned_data["role"],
            actor=membership,
        )
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(request, f"Invitation sent to {issued.invitation.email}. The link works for 7 days.")
    return redirect("console:members")


@console_view(Capability.MANAGE_MEMBERS)
@require_POST
def invitation_revoke_view(request: HttpRequest, invitation_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    invitation = get_object_or_404(Invitation, id=invitation_id, org=membership.org)
    try:
        invitation_revoke(invitation=invitation, actor=membership)
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(request, f"Invitation for {invitation.email} revoked.")
    return redirect("console:members")


@console_view()
@require_POST
def member_role_view(request: HttpRequest, member_id: int) -> HttpResponse:
    membership = membership_required(request)
    target = get_object_or_404(Membership.objects.select_related("user"), id=member_id, org=membership.org)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            membership_change_role(membership=target, role=form.cleaned_data["role"], actor=membership)
        except DomainError as exc:
            report(request, exc)
        else:
            messages.success(request, f"{target.user.email} is now {form.cleaned_data['role']}.")
    return redirect("console:members")


# Removing a member (and leaving) is ``grants.views.members``: it also suspends or reassigns
# the agents the person owned and notifies, which needs the layers above accounts.


def invitation_view(request: HttpRequest, token: str) -> HttpResponse:
    """The link in the invitation email: explains, then accepts on POST (never on GET)."""
    invitation = invitation_by_token(token)
    usable = invitation is not None and invitation.is_open()
    if request.method == "POST" and request.user.is_authenticated and usable:
        try:
            joined = invitation_accept(token=token, user=signed_in(request))
        except DomainError as exc:
            report(request, exc)
        else:
            switch_organization(request, joined)
            messages.success(request, f"Welcome to {joined.org.name}.")
            return redirect("console:home")
    response = render(
        request,
        "console/invitation.html",
        {"invitation": invitation if usable else None, "token": token},
        status=200 if usable else 404,
    )
    # The token is in the URL: never send it to another site. (Not "no-referrer": browsers
    # then send "Origin: null" on the accept form, which CSRF protection rightly refuses.)
    response["Referrer-Policy"] = "same-origin"
    return response


urlpatterns = [
    path("orgs/new", org_create_view, name="org_create"),
    path("orgs/switch", org_switch_view, name="org_switch"),
    path("orgs/settings", org_settings_view, name="org_settings"),
    path("orgs/settings/lifecycle", org_lifecycle_view, name="org_lifecycle"),
    path("members/", members_view, name="members"),
    path("members/invite", member_invite_view, name="member_invite"),
    path("members/<int:member_id>/role", member_role_view, name="member_role"),
    path("members/invitations/<uuid:invitation_id>/revoke", invitation_revoke_view, name="invitation_revoke"),
    path("invitations/<str:token>/", invitation_view, name="invitation"),
]
