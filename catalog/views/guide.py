"""A tool's usage guide: edit, version history, diff, restore, and what agents suggest for it.

Every change is a new version through ``catalog.services.tool_guide_update``
(restoring too), so the history only grows and each step is audited.
"""

from __future__ import annotations

import difflib
import uuid
from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from accounts.console import console_view, membership_required, report
from accounts.permissions import Capability
from agentkey.core.errors import DomainError
from catalog.models import GuideSuggestion, GuideSuggestionBacker, GuideVersion, SuggestionStatus, Tool
from catalog.selectors import guide_suggestions_for_org, tools_for_org
from catalog.services import guide_suggestion_accept, guide_suggestion_dismiss, tool_guide_update

GUIDE_MAX = 20000
# The newest versions listed on the guide page; older ones stay reachable by number.
HISTORY_LIMIT = 100


class GuideForm(forms.Form):
    # The version the editor started from: saving over a newer version is refused, not lost.
    base_version = forms.IntegerField(widget=forms.HiddenInput, required=False, min_value=1)
    content = forms.CharField(
        required=False,
        strip=False,
        label="Usage guide",
        widget=forms.Textarea(attrs={"rows": 14, "class": "mono"}),
        help_text="Sent to agents with the credential: base URL, team ids, conventions. Saving makes a new version.",
    )

    def clean_content(self) -> str:
        # Browsers submit textarea lines with CRLF; the guide is stored with LF.
        content = str(self.cleaned_data["content"]).replace("\r\n", "\n")
        if len(content) > GUIDE_MAX:
            raise forms.ValidationError(
                f"The usage guide can be at most {GUIDE_MAX:,} characters long ({len(content):,} now)."
            )
        return content


class DismissForm(forms.Form):
    reason = forms.CharField(required=False, max_length=500)


# --- diff ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffLine:
    kind: str  # add | del | ctx | hunk
    text: str


def guide_diff(old: str, new: str) -> list[DiffLine]:
    """A unified diff of two guide texts, line by line, for the template to escape and colour.

    The two file-header lines are dropped (the page names the versions), so a
    removed line that itself starts with "--" is never mistaken for a header.
    """
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=3))[2:]
    out = []
    for line in lines:
        if line.startswith("@@"):
            out.append(DiffLine("hunk", line))
        elif line.startswith("+"):
            out.append(DiffLine("add", line))
        elif line.startswith("-"):
            out.append(DiffLine("del", line))
        else:
            out.append(DiffLine("ctx", line))
    return out


def with_learned(guide: str, learned: str) -> str:
    """The guide with an agent's learned line appended as a new bullet: the text an admin starts from."""
    guide = guide.rstrip()
    return f"{guide}\n\n- {learned}" if guide else f"- {learned}"


# --- lookups ---------------------------------------------------------------------------------------


def org_tool(request: HttpRequest, tool_id: uuid.UUID) -> Tool:
    return get_object_or_404(tools_for_org(membership_required(request).org_id), id=tool_id)


def pending_guide_suggestions(tool: Tool) -> QuerySet[GuideSuggestion]:
    return (
        guide_suggestions_for_org(tool.org_id)
        .filter(tool_id=tool.id, status=SuggestionStatus.PENDING)
        .order_by("created_at", "id")
    )


def _suggestion(request: HttpRequest, tool: Tool, suggestion_id: uuid.UUID) -> GuideSuggestion:
    found = get_object_or_404(
        guide_suggestions_for_org(membership_required(request).org_id).filter(tool_id=tool.id),
        id=suggestion_id,
    )
    found.tool = tool
    return found


@dataclass(frozen=True)
class Proposal:
    suggestion: GuideSuggestion
    backers: list[GuideSuggestionBacker]
    accept_text: str


# --- pages -----------------------------------------------------------------------------------------


def _guide_page(request: HttpRequest, tool: Tool, form: GuideForm, status: int = 200) -> HttpResponse:
    versions = (
        GuideVersion.objects.filter(tool=tool)
        .only("version", "created_by_label", "created_at", "tool_id")
        .order_by("-version")[:HISTORY_LIMIT]
    )
    suggestions = pending_guide_suggestions(tool).prefetch_related(
        Prefetch(
            "backers",
            queryset=GuideSuggestionBacker.objects.select_related("agent").order_by("created_at", "id"),
            to_attr="backer_list",
        )
    )
    proposals = [Proposal(s, s.backer_list, with_learned(tool.usage_guide, s.learned)) for s in suggestions]
    return render(
        request,
        "console/tool/guide.html",
        {
            "section": "tools",
            "tool": tool,
            "form": form,
            "versions": versions,
            "history_limit": HISTORY_LIMIT,
            "proposals": proposals,
        },
        status=status,
    )


@console_view()
def tool_guide_view(request: HttpRequest, tool_id: uuid.UUID) -> HttpResponse:
    tool = org_tool(request, tool_id)
    return _guide_page(
        request,
        tool,
        GuideForm(initial={"content": tool.usage_guide, "base_version": tool.current_guide_version}),
    )


@console_view(Capability.MANAGE_TOOLS)
@require_POST
def tool_guide_update_view(request: HttpRequest, tool_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    tool = org_tool(request, tool_id)
    form = GuideForm(request.POST)
    if not form.is_valid():
        return _guide_page(request, tool, form, status=400)
    content = form.cleaned_data["content"]
    if content == tool.usage_guide:
        messages.info(request, "The usage guide is unchanged; no new version was made.")
        return redirect("console:tool_guide", tool_id=tool.id)
    try:
        version = tool_guide_update(
            tool=tool, actor=membership, content=content, expected_version=form.cleaned_data["base_version"]
        )
    except DomainError as exc:
        report(request, exc)
        return _guide_page(request, tool, form, status=400)
    messages.success(request, f"Usage guide of {tool.name} saved as version {version.version}.")
    return redirect("console:tool_guide", tool_id=tool.id)


@console_view()
def tool_guide_version_view(request: HttpRequest, tool_id: uuid.UUID, version: int) -> HttpResponse:
    tool = org_tool(request, tool_id)
    shown = get_object_or_404(GuideVersion.objects.filter(tool=tool), version=version)
    current = shown.version == tool.current_guide_version
    return render(
        request,
        "console/tool/guide_version.html",
        {
            "section": "tools",
            "tool": tool,
            "shown": shown,
            "current": current,
            "diff": [] if current else guide_diff(shown.content, tool.usage_guide),
            "same_text": shown.content == tool.usage_guide,
        },
    )


@console_view(Capability.MANAGE_TOOLS)
@require_POST
def tool_guide_restore_view(request: HttpRequest, tool_id: uuid.UUID, version: int) -> HttpResponse:
    membership = membership_required(request)
    tool = org_tool(request, tool_id)
    old = get_object_or_404(GuideVersion.objects.filter(tool=tool), version=version)
    if old.content == tool.usage_guide:
        messages.info(request, f"Version {old.version} has the current text; nothing to restore.")
        return redirect("console:tool_guide", tool_id=tool.id)
    try:
        new = tool_guide_update(tool=tool, actor=membership, content=old.content, restored_from=old.version)
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(request, f"Version {old.version} restored as version {new.version}.")
    return redirect("console:tool_guide", tool_id=tool.id)


@console_view(Capability.MANAGE_TOOLS)
@require_POST
def tool_guide_suggestion_accept_view(
    request: HttpRequest, tool_id: uuid.UUID, suggestion_id: uuid.UUID
) -> HttpResponse:
    """Accept with the text the admin edited (the current guide plus the learned line, as they left it)."""
    membership = membership_required(request)
    tool = org_tool(request, tool_id)
    suggestion = _suggestion(request, tool, suggestion_id)
    form = GuideForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"The usage guide must be at most {GUIDE_MAX:,} characters.")
        return redirect("console:tool_guide", tool_id=tool.id)
    try:
        version = guide_suggestion_accept(
            suggestion=suggestion,
            actor=membership,
            content=form.cleaned_data["content"],
            expected_version=form.cleaned_data["base_version"],
        )
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(request, f"Suggestion accepted: the usage guide is now version {version.version}.")
    return redirect("console:tool_guide", tool_id=tool.id)


@console_view(Capability.MANAGE_TOOLS)
@require_POST
def tool_guide_suggestion_dismiss_view(
    request: HttpRequest, tool_id: uuid.UUID, suggestion_id: uuid.UUID
) -> HttpResponse:
    membership = membership_required(request)
    tool = org_tool(request, tool_id)
    suggestion = _suggestion(request, tool, suggestion_id)
    form = DismissForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        guide_suggestion_dismiss(suggestion=suggestion, actor=membership, reason=reason)
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(
            request, "Suggestion dismissed. Agents cannot suggest it again for this guide version."
        )
    return redirect("console:tool_guide", tool_id=tool.id)


urlpatterns = [
    path("tools/<uuid:tool_id>/guide", tool_guide_view, name="tool_guide"),
    path("tools/<uuid:tool_id>/guide/update", tool_guide_update_view, name="tool_guide_update"),
    path(
        "tools/<uuid:tool_id>/guide/versions/<int:version>",
        tool_guide_version_view,
        name="tool_guide_version",
    ),
    path(
        "tools/<uuid:tool_id>/guide/versions/<int:version>/restore",
        tool_guide_restore_view,
        name="tool_guide_restore",
    ),
    path(
        "tools/<uuid:tool_id>/guide/suggestions/<uuid:suggestion_id>/accept",
        tool_guide_suggestion_accept_view,
        name="tool_guide_suggestion_accept",
    ),
    path(
        "tools/<uuid:tool_id>/guide/suggestions/<uuid:suggestion_id>/dismiss",
        tool_guide_suggestion_dismiss_view,
        name="tool_guide_suggestion_dismiss",
    ),
]
