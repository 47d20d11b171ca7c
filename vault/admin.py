"""Encrypted secrets in the operator console: which master key wraps each one, nothing more.

Read-only, and never the wrapped key or the ciphertext. vault is a leaf (DESIGN §1): a
secret does not know its organization, so only superusers see this list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from agentkey.core.admin import FilterLookupsOnly
from vault.models import Secret

FIELDS = ("id", "kek_id", "created_at", "updated_at")


# django-stubs types ModelAdmin as generic; at runtime it is not subscriptable.
if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Secret]
else:
    _ModelAdmin = admin.ModelAdmin


@admin.register(Secret)
class SecretAdmin(FilterLookupsOnly, _ModelAdmin):
    list_display = FIELDS
    list_filter = ("kek_id",)
    search_fields = ("=id",)
    ordering = ("-created_at",)
    fields = FIELDS
    readonly_fields = FIELDS
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Secret]:
        # Never load the encrypted bytes into the admin, not even to leave them unshown.
        return super().get_queryset(request).only(*FIELDS)

    def _superuser(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(
            user.is_active and getattr(user, "is_staff", False) and getattr(user, "is_superuser", False)
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._superuser(request)

    def has_view_permission(self, request: HttpRequest, obj: Secret | None = None) -> bool:
        return self._superuser(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Secret | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Secret | None = None) -> bool:
        return False
