"""Notification channels and deliveries in the operator console: read-only, URL never shown.

A webhook URL is a credential for posting into the channel, so this admin shows
only its masked hint; the vault rows it points to are not even named. Changes go
through the console's notification settings (``notifications.services``), which
audit them; the one action here, retrying deliveries that gave up, calls the same
service as the dashboard's button. ``OrgScopedAdmin`` puts ``FilterLookupsOnly``
before ``ModelAdmin``, so a changelist accepts only the lookups its filters
generate (no ``?url_secret__…`` or ``?payload__…`` oracle), and scopes rows to the
person's organizations.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.admin_kit import OrgScopedAdmin
from accounts.permissions import Capability
from notifications.models import Delivery, WebhookEndpoint
from notifications.services import delivery_retry


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(OrgScopedAdmin[WebhookEndpoint]):
    list_display = ("name", "org", "kind", "url_hint", "events_display", "enabled", "created_at")
    list_select_related = ("org",)
    list_filter = ("kind", "enabled", ("org", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name",)
    ordering = ("org__name", "name")
    change_fields = (
        "id",
        "org",
        "name",
        "kind",
        "url_hint",
        "events_display",
        "enabled",
        "created_by",
        "created_at",
        "updated_at",
    )

    @admin.display(description="events")
    def events_display(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.event_labels) or "—"


@admin.register(Delivery)
class DeliveryAdmin(OrgScopedAdmin[Delivery]):
    """The outbox: status, attempts and the last error of each delivery. The payload (labels
    written by agents) and the channel's URL are not shown; the error texts never contain them."""

    list_display = (
        "created_at",
        "org",
        "channel",
        "target",
        "event",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
    )
    list_select_related = ("org", "endpoint")
    list_filter = ("status", "channel", "event", ("org", admin.RelatedOnlyFieldListFilter))
    ordering = ("-created_at",)
    actions = ("retry_selected",)
    change_fields = (
        "id",
        "org",
        "channel",
        "target",
        "event",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "message_id",
        "created_at",
        "claimed_at",
        "sent_at",
    )

    def describe(self, obj: Delivery) -> str:
        return f"{obj.event_label} to {self.target(obj)}"

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return self.allowed(request, Capability.MANAGE_TOOLS)

    @admin.display(description="to")
    def target(self, obj: Delivery) -> str:
        if obj.endpoint is not None:
            return obj.endpoint.name
        return obj.recipient or "—"

    @admin.action(description="Retry selected deliveries that gave up", permissions=["manage"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        deliveries = self.selection(request, queryset)
        self.apply_each(
            request,
            deliveries,  # the service refuses (and the page reports) any that did not give up
            lambda delivery, actor: delivery_retry(delivery=delivery, actor=actor),
            done="{count} deliveries queued again.",
        )
