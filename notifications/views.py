"""Notification settings: where an organization hears about new requests.

Everyone in the organization sees the channels (name, kind, masked URL, events),
their recent deliveries and the email setting; owners and admins add, edit,
pause, test and remove channels, retry deliveries that gave up and change the
email setting. The webhook URL is a secret: it is typed in, stored in the vault
and never rendered back (not even into the form after a failed submit), only its
masked hint. A generic channel's signing secret is shown once, on the response
that issued it (creating the channel, switching it to generic, rotating it):
never through a redirect, a message or the session, and never cached.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRefresh

from accounts.console import console_view, membership_required, report
from accounts.models import Membership
from accounts.permissions import Capability
from agentkey.core.errors import CryptoError, DomainError
from notifications.models import (
    DEFAULT_EVENTS,
    SUBSCRIBABLE_CHOICES,
    ChannelKind,
    Delivery,
    DeliveryStatus,
    WebhookEndpoint,
)
from notifications.selectors import (
    deliveries_for_org,
    endpoints_for_org,
    recent_deliveries_by_endpoint,
    recent_email_deliveries,
)
from notifications.services import (
    delivery_retry,
    delivery_send_test,
    email_recipients,
    email_settings_for,
    email_settings_update,
    endpoint_create,
    endpoint_delete,
    endpoint_set_enabled,
    endpoint_signing_secret_rotate,
    endpoint_update,
)
from notifications.signing import new_signing_secret


class WriteOnlyURLInput(forms.URLInput):
    """A URL input that never renders a value: what was typed is not sent back to the browser."""

    def format_value(self, value: Any) -> str | None:
        return None


def url_field(*, required: bool, help_text: str) -> forms.CharField:
    return forms.CharField(
        label="Webhook URL",
        required=required,
        max_length=4000,  # the service says "too long" (at 2,000) with a clear message
        strip=True,
        help_text=help_text,
        widget=WriteOnlyURLInput(
            attrs={"autocomplete": "off", "spellcheck": "false", "placeholder": "https://"}
        ),
    )


class EndpointForm(forms.Form):
    """Parses input only; the service validates (the same rules for every interface)."""

    name = forms.CharField(
        max_length=100, help_text="How this channel is shown here, for example #agent-requests."
    )
    kind = forms.ChoiceField(choices=ChannelKind.choices, label="Kind of channel")
    url = url_field(
        required=True,
        help_text="Stored encrypted and never shown again; only its host and last characters are.",
    )
    events = forms.MultipleChoiceField(
        choices=SUBSCRIBABLE_CHOICES,
        required=False,  # the service explains what is missing
        widget=forms.CheckboxSelectMultiple,
        label="Send a message for",
    )


class EndpointEditForm(EndpointForm):
    url = url_field(
        required=False,
        help_text="Leave empty to keep the current URL. A new URL replaces it; it is never shown again.",
    )


class EmailForm(forms.Form):
    enabled = forms.BooleanField(required=False, label="Email the people who can act on each event")
    events = forms.MultipleChoiceField(
        choices=SUBSCRIBABLE_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Send an email for",
    )


def _place(form: forms.Form, request: HttpRequest, exc: DomainError | CryptoError) -> None:
    """Show a refusal next to the field it concerns, else as a message."""
    if isinstance(exc, DomainError):
        field = next((d.field for d in exc.details if d.field in form.fields), None)
        if field is not None:
            form.add_error(field, f"{exc.error} {exc.hint}")
            return
    report(request, exc)


def _endpoint(request: HttpRequest, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """A channel of the active organization, or 404."""
    org_id = membership_required(request).org_id
    return get_object_or_404(endpoints_for_org(org_id), id=endpoint_id)


def _back(request: HttpRequest) -> HttpResponse:
    """After a one-click change: htmx reloads the page (to show the message), a plain form redirects."""
    if request.htmx:  # type: ignore[attr-defined]
        return HttpResponseClientRefresh()
    return redirect("console:notifications")


def _attach_recent(endpoints: list[WebhookEndpoint], recent: dict[uuid.UUID, list[Delivery]]) -> None:
    """Each channel's recent deliveries, and whether they need a look (open when something failed)."""
    for endpoint in endpoints:
        rows = recent.get(endpoint.id, [])
        dead = sum(1 for row in rows if row.status == DeliveryStatus.DEAD)
        endpoint.recent = rows  # type: ignore[attr-defined]
        endpoint.recent_dead = dead  # type: ignore[attr-defined]
        endpoint.recent_trouble = dead > 0 or bool(rows and rows[0].status == DeliveryStatus.FAILED)  # type: ignore[attr-defined]


def _email_context(membership: Membership) -> dict[str, Any]:
    email = email_settings_for(membership.org_id)
    recipients = email_recipients(org_id=membership.org_id, event="access.requested")
    return {"email": email, "email_recipient_count": len(recipients)}


@console_view()
def notifications_view(request: HttpRequest) -> HttpResponse:
    membership = membership_required(request)
    org_id = membership.org_id
    endpoints = list(endpoints_for_org(org_id).order_by("name", "id"))
    _attach_recent(endpoints, recent_deliveries_by_endpoint(org_id))
    return render(
        request,
        "console/notifications.html",
        {
            "section": "notifications",
            "endpoints": endpoints,
            "email_deliveries": recent_email_deliveries(org_id),
            **_email_context(membership),
        },
    )


def _signing_secret_page(
    request: HttpRequest, *, endpoint: WebhookEndpoint, secret: str, rotated: bool
) -> HttpResponse:
    """The one response that shows a signing secret (callers are ``never_cache``)."""
    return render(
        request,
        "console/notifications/signing_secret.html",
        {"section": "notifications", "endpoint": endpoint, "signing_secret": secret, "rotated": rotated},
    )


@never_cache
@sensitive_post_parameters("url")
@console_view(Capability.MANAGE_TOOLS)
def notification_create_view(request: HttpRequest) -> HttpResponse:
    membership = membership_required(request)
    form = EndpointForm(
        request.POST if request.method == "POST" else None,
        initial={"kind": ChannelKind.SLACK, "events": DEFAULT_EVENTS},
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        signing_secret = new_signing_secret() if data["kind"] == ChannelKind.GENERIC else None
        try:
            endpoint = endpoint_create(
                org=membership.org,
                actor=membership,
                name=data["name"],
                kind=data["kind"],
                url=data["url"],
                events=data["events"],
                signing_secret=signing_secret,
            )
        except (DomainError, CryptoError) as exc:
            _place(form, request, exc)
        else:
            if signing_secret is not None:
                return _signing_secret_page(request, endpoint=endpoint, secret=signing_secret, rotated=False)
            messages.success(request, f"{endpoint.name} added. Send a test notification to check it.")
            return redirect("console:notifications")
    return render(
        request,
        "console/notifications/form.html",
        {"section": "notifications", "form": form, "endpoint": None},
    )


@never_cache
@sensitive_post_parameters("url")
@console_view(Capability.MANAGE_TOOLS)
def notification_edit_view(request: HttpRequest, endpoint_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    endpoint = _endpoint(request, endpoint_id)
    initial = {"name": endpoint.name, "kind": endpoint.kind, "events": endpoint.events}
    form = EndpointEditForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        was_signed = endpoint.signing_secret_id is not None
        signing_secret = new_signing_secret()  # used only if the channel becomes generic
        try:
            endpoint = endpoint_update(
                endpoint=endpoint,
                actor=membership,
                name=data["name"],
                kind=data["kind"],
                url=data["url"] or None,
                events=data["events"],
                signing_secret=signing_secret,
            )
        except (DomainError, CryptoError) as exc:
            _place(form, request, exc)
        else:
            if not was_signed and endpoint.signing_secret_id is not None:
                return _signing_secret_page(request, endpoint=endpoint, secret=signing_secret, rotated=False)
            messages.success(request, f"{endpoint.name} saved.")
            return redirect("console:notifications")
    return render(
        request,
        "console/notifications/form.html",
        {"section": "notifications", "form": form, "endpoint": endpoint},
    )


@console_view(Capability.MANAGE_TOOLS)
@require_POST
def notification_toggle_view(request: HttpRequest, endpoint_id: uuid.UUID) -> HttpResponse:
    """Pause or resume. The form says which state it wants, so a double submit is harmless."""
    membership = membership_required(request)
    endpoint = _endpoint(request, endpoint_id)
    wanted = request.POST.get("enabled")
    if wanted not in ("0", "1"):
        messages.error(request, "Choose whether to pause or resume the channel.")
        return _back(request)
    try:
        endpoint = endpoint_set_enabled(endpoint=endpoint, actor=membership, enabled=wanted == "1")
    except DomainError as exc:
        report(request, exc)
        return _back(request)
    if request.htmx:  # type: ignore[attr-defined]
        _attach_recent([endpoint], recent_deliveries_by_endpoint(membership.org_id))
        return render(request, "console/notifications/_endpoint.html", {"e": endpoint})
    state = "resumed" if endpoint.enabled else "paused"
    messages.success(request, f"{endpoint.name} {state}.")
    return redirect("console:notifications")


@console_view(Capability.MANAGE_TOOLS)
@require_POST
def notification_delete_view(request: HttpRequest, endpoint_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    endpoint = _endpoint(request, endpoint_id)
    name = endpoint.name
    try:
        endpoint_delete(endpoint=endpoint, actor=membership)
    except DomainError as exc:
        report(request, exc)
        return _back(request)
    if request.htmx:  # type: ignore[attr-defined]
        # hx-swap="outerHTML" with an empty body removes the row.
        return HttpResponse("")
    messages.success(request, f"{name} removed; its URL was destroyed.")
    return redirect("console:notifications")


@console_view(Capability.MANAGE_TOOLS)
@require_POST
def notification_test_view(request: HttpRequest, endpoint_id: uuid.UUID) -> HttpResponse:
    """Queue a test message; its outcome appears in the channel's recent deliveries."""
    membership = membership_required(request)
    endpoint = _endpoint(request, endpoint_id)
    try:
        delivery_send_test(endpoint=endpoint, actor=membership)
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(
            request,
            f"Test notification queued for {endpoint.name}. Reload in a few seconds to see how it went.",
        )
    return _back(request)


@never_cache
@console_view(Capability.MANAGE_TOOLS)
@require_POST
def notification_rotate_secret_view(request: HttpRequest, endpoint_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    endpoint = _endpoint(request, endpoint_id)
    try:
        secret = endpoint_signing_secret_rotate(endpoint=endpoint, actor=membership)
    except (DomainError, CryptoError) as exc:
        report(request, exc)
        return redirect("console:notifications")
    return _signing_secret_page(request, endpoint=endpoint, secret=secret, rotated=True)


@console_view(Capability.MANAGE_TOOLS)
@require_POST
def notification_delivery_retry_view(request: HttpRequest, delivery_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    delivery = get_object_or_404(deliveries_for_org(membership.org_id), id=delivery_id)
    try:
        delivery_retry(delivery=delivery, actor=membership)
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(request, "Delivery queued again. Reload in a few seconds to see how it went.")
    return _back(request)


@console_view(Capability.MANAGE_TOOLS)
def notification_email_view(request: HttpRequest) -> HttpResponse:
    membership = membership_required(request)
    current = email_settings_for(membership.org_id)
    form = EmailForm(
        request.POST if request.method == "POST" else None,
        initial={"enabled": current.enabled, "events": current.events},
    )
    if request.method == "POST" and form.is_valid():
        try:
            email_settings_update(
                org=membership.org,
                actor=membership,
                enabled=form.cleaned_data["enabled"],
                events=form.cleaned_data["events"],
            )
        except DomainError as exc:
            _place(form, request, exc)
        else:
            messages.success(request, "Email notifications saved.")
            return redirect("console:notifications")
    return render(
        request,
        "console/notifications/email.html",
        {"section": "notifications", "form": form, **_email_context(membership)},
    )


urlpatterns = [
    path("notifications/", notifications_view, name="notifications"),
    path("notifications/new", notification_create_view, name="notification_create"),
    path("notifications/<uuid:endpoint_id>/edit", notification_edit_view, name="notification_edit"),
    path("notifications/<uuid:endpoint_id>/toggle", notification_toggle_view, name="notification_toggle"),
    path("notifications/<uuid:endpoint_id>/delete", notification_delete_view, name="notification_delete"),
    path("notifications/<uuid:endpoint_id>/test", notification_test_view, name="notification_test"),
    path(
        "notifications/<uuid:endpoint_id>/rotate-secret",
        notification_rotate_secret_view,
        name="notification_rotate_secret",
    ),
    path(
        "notifications/deliveries/<uuid:delivery_id>/retry",
        notification_delivery_retry_view,
        name="notification_delivery_retry",
    ),
    path("notifications/email", notification_email_view, name="notification_email"),
]
