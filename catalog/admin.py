"""Tool and usage-guide suggestions in the operator console.

The Tool admin is registered in grants/admin.py: a tool is created through
grants.services.tool_add (which opens access requests for the backers of the
suggestions it answers), and catalog may not import grants (DESIGN §1).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from accounts.admin_kit import OrgScopedAdmin, ReadOnlyInline
from accounts.permissions import Capability
from catalog.models import (
    GuideSuggestion,
    GuideSuggestionBacker,
    SuggestionBacker,
    SuggestionStatus,
    ToolSuggestion,
)
from catalog.services import guide_suggestion_dismiss, tool_suggestion_dismiss


class DismissForm(forms.Form):
    reason = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Optional: why, for the record.",
    )


def _backer_count(obj: Any) -> int:
    return int(obj.backer_count)


class SuggestionBackerInline(ReadOnlyInline):
    model = SuggestionBacker
    fields = ("agent", "latest_reason", "created_at", "updated_at")
    ordering = ("created_at",)
    verbose_name_plural = "Backers"

    def get_queryset(self, request: HttpRequest) -> QuerySet[SuggestionBacker]:
        return super().get_queryset(request).select_related("agent")


@admin.register(ToolSuggestion)
class ToolSuggestionAdmin(OrgScopedAdmin[ToolSuggestion]):
    list_display = ("name", "url", "org", "status", "backers", "updated_at", "create_tool")
    list_select_related = ("org", "converted_tool")
    list_filter = ("status", ("org", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "url")
    ordering = ("-updated_at",)
    change_fields = (
        "id",
        "org",
        "name",
        "url",
        "status",
        "backers",
        "create_tool",
        "dismissed_until",
        "dismissal_reason",
        "converted_tool",
        "decided_by",
        "decided_at",
        "created_at",
        "updated_at",
    )
    inlines = (SuggestionBackerInline,)
    actions = ("dismiss_selected",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ToolSuggestion]:
        return super().get_queryset(request).annotate(backer_count=Count("backers"))

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return self.allowed(request, Capability.MANAGE_TOOLS)

    @admin.display(description="backers", ordering="backer_count")
    def backers(self, obj: ToolSuggestion) -> int:
        return _backer_count(obj)

    @admin.display(description="tool")
    def create_tool(self, obj: ToolSuggestion) -> SafeString | str:
        if obj.status == SuggestionStatus.ACCEPTED:
            if obj.converted_tool is None:
                return "—"
            return format_html(
                '<a href="{}">Added as {}</a>',
                reverse("admin:catalog_tool_change", args=[obj.converted_tool.pk]),
                obj.converted_tool.name,
            )
        query = urlencode({"org": str(obj.org_id), "name": obj.name, "url": obj.url})
        return format_html('<a href="{}?{}">Create tool</a>', reverse("admin:catalog_tool_add"), query)

    @admin.action(description="Dismiss selected tool suggestions…", permissions=["manage"])
    def dismiss_selected(
        self, request: HttpRequest, queryset: QuerySet[ToolSuggestion]
    ) -> TemplateResponse | None:
        suggestions = self.selection(request, queryset)
        if not suggestions:
            return None
        form = DismissForm(request.POST if request.POST.get("apply") else None)
        if not (form.is_bound and form.is_valid()):
            return self.confirmation(
                request,
                suggestions,
                action="dismiss_selected",
                title="Dismiss tool suggestions",
                question="Dismiss these suggestions? For 24 hours agents cannot suggest the same tool again.",
                form=form,
                submit="Dismiss",
            )
        reason = form.cleaned_data["reason"]
        self.apply_each(
            request,
            suggestions,
            lambda suggestion, actor: tool_suggestion_dismiss(
                suggestion=suggestion, actor=actor, reason=reason
            ),
            done="Dismissed {count} tool suggestion(s).",
        )
        return None


class GuideSuggestionBackerInline(ReadOnlyInline):
    model = GuideSuggestionBacker
    fields = ("agent", "latest_why", "created_at", "updated_at")
    ordering = ("created_at",)
    verbose_name_plural = "Backers"

    def get_queryset(self, request: HttpRequest) -> QuerySet[GuideSuggestionBacker]:
        return super().get_queryset(request).select_related("agent")


@admin.register(GuideSuggestion)
class GuideSuggestionAdmin(OrgScopedAdmin[GuideSuggestion]):
    list_display = ("summary", "tool", "org", "base_version", "status", "backers", "updated_at")
    list_select_related = ("tool", "org")
    list_filter = (
        "status",
        ("org", admin.RelatedOnlyFieldListFilter),
        ("tool", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("learned", "tool__name")
    ordering = ("-updated_at",)
    change_fields = (
        "id",
        "org",
        "tool",
        "edit_guide",
        "base_version",
        "learned",
        "status",
        "backers",
        "dismissal_reason",
        "decided_by",
        "decided_at",
        "created_at",
        "updated_at",
    )
    inlines = (GuideSuggestionBackerInline,)
    actions = ("dismiss_selected",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[GuideSuggestion]:
        # A select_related here replaces list_select_related on the changelist, so name both.
        queryset = super().get_queryset(request).select_related("tool", "org")
        return queryset.annotate(backer_count=Count("backers"))

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return self.allowed(request, Capability.MANAGE_TOOLS)

    def describe(self, obj: GuideSuggestion) -> str:
        return f"{obj.tool.name}: {Truncator(obj.learned).chars(60)}"

    @admin.display(description="suggestion")
    def summary(self, obj: GuideSuggestion) -> str:
        return Truncator(obj.learned).chars(80)

    @admin.display(description="backers", ordering="backer_count")
    def backers(self, obj: GuideSuggestion) -> int:
        return _backer_count(obj)

    @admin.display(description="usage guide")
    def edit_guide(self, obj: GuideSuggestion) -> SafeString:
        return format_html(
            '<a href="{}">Edit the usage guide of {} (now version {})</a>',
            reverse("admin:catalog_tool_change", args=[obj.tool.pk]),
            obj.tool.name,
            obj.tool.current_guide_version,
        )

    @admin.action(description="Dismiss selected guide suggestions…", permissions=["manage"])
    def dismiss_selected(
        self, request: HttpRequest, queryset: QuerySet[GuideSuggestion]
    ) -> TemplateResponse | None:
        suggestions = self.selection(request, queryset)
        if not suggestions:
            return None
        form = DismissForm(request.POST if request.POST.get("apply") else None)
        if not (form.is_bound and form.is_valid()):
            return self.confirmation(
                request,
                suggestions,
                action="dismiss_selected",
                title="Dismiss usage-guide suggestions",
                question="Dismiss these suggestions? Agents cannot resubmit them until the guide changes.",
                form=form,
                submit="Dismiss",
            )
        reason = form.cleaned_data["reason"]
        self.apply_each(
            request,
            suggestions,
            lambda suggestion, actor: guide_suggestion_dismiss(
                suggestion=suggestion, actor=actor, reason=reason
            ),
            done="Dismissed {count} guide suggestion(s).",
        )
        return None
