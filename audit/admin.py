"""The audit log in the operator console: strictly read-only.

The database refuses UPDATE and DELETE on this table anyway; the admin does not
offer them. audit is a leaf (DESIGN §1) and cannot see memberships, so it cannot
scope events to an organization: only superusers read the log here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from agentkey.core.admin import FilterLookupsOnly
from audit.models import Action, AuditEvent

FIELDS = (
    "id",
    "created_at",
    "action",
    "action_label",
    "org_id",
    "actor_type",
    "actor_id",
    "actor_label",
    "target_type",
    "target_id",
    "target_label",
    "metadata",
    "ip",
    "request_id",
    "signature",
)


class ActionFilter(admin.SimpleListFilter):
    """Every known action by its label, without a query for distinct values."""

    title = "action"
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(value), str(label)) for value, label in Action.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(action=value) if value else queryset


# django-stubs types ModelAdmin as generic; at runtime it is not subscriptable.
if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[AuditEvent]
else:
    _ModelAdmin = admin.ModelAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(FilterLookupsOnly, _ModelAdmin):
    list_display = ("id", "created_at", "action_display", "actor_label", "target_label", "org_id")
    list_display_links = ("id", "created_at")
    list_filter = (ActionFilter, "actor_type")
    search_fields = ("=actor_id", "=target_id", "=request_id", "actor_label", "target_label")
    ordering = ("-id",)
    fields = FIELDS
    readonly_fields = FIELDS
    # COUNT(*) over the whole log on every page view would grow with the log.
    show_full_result_count = False
    list_per_page = 100

    @admin.display(description="action", ordering="action")
    def action_display(self, obj: AuditEvent) -> str:
        return f"{obj.action_label} ({obj.action})"

    def _superuser(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(
            user.is_active and getattr(user, "is_staff", False) and getattr(user, "is_superuser", False)
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._superuser(request)

    def has_view_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return self._superuser(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
