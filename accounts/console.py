"""The human console's plumbing: the active organization, role-checked views, domain errors as messages."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.shortcuts import redirect

from accounts.models import Membership, User
from accounts.permissions import ROLE_CAPABILITIES, Capability
from agentkey.core.errors import CryptoError, DomainError

SESSION_KEY = "agentkey_org"
_CACHE = "_agentkey_membership"

View = TypeVar("View", bound=Callable[..., HttpResponseBase])


def membership_of(request: HttpRequest) -> Membership | None:
    """The membership for the organization chosen in this session (else the oldest). Cached per request."""
    if hasattr(request, _CACHE):
        return cast(Membership | None, getattr(request, _CACHE))
    user = getattr(request, "user", None)
    membership = None
    if user is not None and user.is_authenticated:
        memberships = Membership.objects.select_related("org", "user").filter(user=user)
        chosen = request.session.get(SESSION_KEY)
        if chosen:
            membership = memberships.filter(org_id=chosen).first()
        if membership is None:
            membership = memberships.order_by("created_at").first()
    setattr(request, _CACHE, membership)
    return membership


def switch_organization(request: HttpRequest, membership: Membership) -> None:
    request.session[SESSION_KEY] = str(membership.org_id)
    setattr(request, _CACHE, membership)


def can(membership: Membership | None, capability: Capability) -> bool:
    return membership is not None and capability in ROLE_CAPABILITIES.get(membership.role, frozenset())


def console_view(capability: Capability = Capability.VIEW) -> Callable[[View], View]:
    """A dashboard view for members of the active organization whose role grants ``capability``.

    Anonymous people go to sign-in; people without an organization go to create
    one; a role without the capability gets 403. The view receives the
    membership as ``request.membership``. The services check the role again on
    every change: this decorator decides what is shown, not what is allowed.
    """

    def decorate(view: View) -> View:
        @login_required
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            membership = membership_of(request)
            if membership is None:
                return redirect("console:org_create")
            if not can(membership, capability):
                raise PermissionDenied(f"Your role ({membership.role}) does not allow this.")
            request.membership = membership  # type: ignore[attr-defined]
            return view(request, *args, **kwargs)

        return cast(View, wrapper)

    return decorate


def report(request: HttpRequest, exc: DomainError | CryptoError) -> None:
    """Show a refused change to the person: what went wrong and what to do next."""
    if isinstance(exc, DomainError):
        messages.error(request, f"{exc.error} {exc.hint}")
    else:
        messages.error(request, "The credential store refused this (master key problem). Tell your operator.")


def back(request: HttpRequest, fallback: str) -> HttpResponseRedirect:
    """Redirect to a same-site ``next`` if given, else to ``fallback``."""
    from django.utils.http import url_has_allowed_host_and_scheme

    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return HttpResponseRedirect(target)
    return redirect(fallback)


def signed_in(request: HttpRequest) -> User:
    """The signed-in person (views behind login_required)."""
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied("Sign in first.")
    return user


def membership_required(request: HttpRequest) -> Membership:
    membership = getattr(request, "membership", None)
    if not isinstance(membership, Membership):
        raise PermissionDenied("No organization.")
    return membership
