"""Usage-guide drafts: start one from a documentation URL, watch it being written, review, apply or discard.

The draft page follows the generation live over server-sent events
(``draft_stream``): it replays the draft's stream from the start (or from the
browser's ``Last-Event-ID`` after a reconnect) and follows it until ``done`` or
``error``, or for two minutes at most (the browser then reconnects and resumes).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import messages
from django.db import connection
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.console import can, console_view, membership_required, report
from accounts.permissions import Capability
from agentkey.core import streams
from agentkey.core.errors import DomainError
from catalog.drafts.generation import OFFLINE, STALE_AFTER, configured_model, stream_name
from catalog.drafts.selectors import guide_drafts_for_org
from catalog.drafts.services import draft_apply, draft_discard, draft_start
from catalog.models import DraftStatus, GuideDraft, SuggestionStatus, Tool, ToolSuggestion
from catalog.selectors import tool_suggestions_for_org, tools_for_org

GUIDE_MAX = 20000
RECENT_LIMIT = 10
# An SSE response ends after this long; the browser reconnects with Last-Event-ID and resumes.
STREAM_SECONDS = 120.0
# How long one wait for new events lasts before the row is checked and a keep-alive is sent.
IDLE_MS = 5000
POLL_SECONDS = 2.0
FINISHED = (DraftStatus.DONE, DraftStatus.FAILED)


class DraftStartForm(forms.Form):
    source_url = forms.CharField(
        max_length=500,
        label="Documentation URL",
        widget=forms.TextInput(
            attrs={"inputmode": "url", "placeholder": "https://docs.example.com/api/authentication"}
        ),
        help_text="The page that explains authentication: API keys or tokens, scopes, the auth header, the base URL. "
        "Public http(s) pages only; it is fetched once, from this server.",
    )
    tool = forms.UUIDField(required=False, widget=forms.HiddenInput)
    suggestion = forms.UUIDField(required=False, widget=forms.HiddenInput)


class ApplyForm(forms.Form):
    base_version = forms.IntegerField(widget=forms.HiddenInput, required=False, min_value=1)
    content = forms.CharField(
        required=False,
        strip=False,
        label="Draft usage guide",
        widget=forms.Textarea(attrs={"rows": 24, "class": "mono"}),
        help_text="Check every line against the documentation before applying. Applying saves it as a new "
        "version of the usage guide; the current one stays in the history.",
    )

    def clean_content(self) -> str:
        content = str(self.cleaned_data["content"]).replace("\r\n", "\n")
        if len(content) > GUIDE_MAX:
            raise forms.ValidationError(
                f"The usage guide can be at most {GUIDE_MAX:,} characters long ({len(content):,} now)."
            )
        return content


# --- lookups ---------------------------------------------------------------------------------------


def _org_draft(request: HttpRequest, draft_id: uuid.UUID) -> GuideDraft:
    org_id = membership_required(request).org_id
    return get_object_or_404(
        guide_drafts_for_org(org_id).select_related("tool", "suggestion", "created_by"), id=draft_id
    )


def _scoped(
    request: HttpRequest, *, tool_id: uuid.UUID | None, suggestion_id: uuid.UUID | None
) -> tuple[Tool | None, ToolSuggestion | None]:
    org_id = membership_required(request).org_id
    tool = get_object_or_404(tools_for_org(org_id), id=tool_id) if tool_id else None
    suggestion = (
        get_object_or_404(tool_suggestions_for_org(org_id), id=suggestion_id) if suggestion_id else None
    )
    return tool, suggestion


def _uuid(raw: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None


def model_label(model: str) -> str:
    return "Offline extractor (no language model)" if model == OFFLINE else model


# --- start -----------------------------------------------------------------------------------------


@console_view(Capability.MANAGE_TOOLS)
def draft_create_view(request: HttpRequest) -> HttpResponse:
    """The documentation URL for a tool (?tool=), a suggestion (?suggestion=) or a tool yet to be created."""
    membership = membership_required(request)
    params = request.POST if request.method == "POST" else request.GET
    tool, suggestion = _scoped(
        request, tool_id=_uuid(params.get("tool")), suggestion_id=_uuid(params.get("suggestion"))
    )
    status = 200
    if request.method == "POST":
        form = DraftStartForm(request.POST)
        if form.is_valid():
            try:
                draft = draft_start(
                    org=membership.org,
                    actor=membership,
                    source_url=form.cleaned_data["source_url"],
                    tool=tool,
                    suggestion=suggestion,
                )
            except DomainError as exc:
                form.add_error("source_url", f"{exc.error} {exc.hint}")
            else:
                return redirect("console:draft", draft_id=draft.id)
        status = 400
    else:
        form = DraftStartForm(
            initial={
                "source_url": (tool.url if tool else "") or (suggestion.url if suggestion else ""),
                "tool": tool.id if tool else None,
                "suggestion": suggestion.id if suggestion else None,
            }
        )
    recent = guide_drafts_for_org(membership.org_id)
    recent = recent.filter(tool=tool) if tool else recent.filter(tool__isnull=True)
    return render(
        request,
        "console/drafts/new.html",
        {
            "section": "tools",
            "form": form,
            "tool": tool,
            "suggestion": suggestion,
            "recent": recent.only("id", "status", "source_url", "model", "created_at", "applied_version")[
                :RECENT_LIMIT
            ],
            "model": model_label(configured_model()),
        },
        status=status,
    )


# --- the draft page --------------------------------------------------------------------------------


def _stale(draft: GuideDraft, now: datetime) -> bool:
    since = draft.started_at or draft.created_at
    return draft.status in (DraftStatus.PENDING, DraftStatus.RUNNING) and since < now - STALE_AFTER


def _prefill_url(draft: GuideDraft) -> str:
    url = reverse("console:tool_create") + f"?draft={draft.id}"
    if draft.suggestion is not None and draft.suggestion.status == SuggestionStatus.PENDING:
        url += f"&suggestion={draft.suggestion.id}"
    return url


def _draft_page(
    request: HttpRequest, draft: GuideDraft, form: ApplyForm | None = None, status: int = 200
) -> HttpResponse:
    tool = draft.tool
    if form is None:
        form = ApplyForm(
            initial={"content": draft.content, "base_version": tool.current_guide_version if tool else None}
        )
    return render(
        request,
        "console/drafts/draft.html",
        {
            "section": "tools",
            "draft": draft,
            "tool": tool,
            "form": form,
            "model": model_label(draft.model),
            "live": draft.status in (DraftStatus.PENDING, DraftStatus.RUNNING),
            "stale": _stale(draft, timezone.now()),
            "prefill_url": _prefill_url(draft) if tool is None else "",
            "manage": can(membership_required(request), Capability.MANAGE_TOOLS),
        },
        status=status,
    )


@console_view()
def draft_view(request: HttpRequest, draft_id: uuid.UUID) -> HttpResponse:
    return _draft_page(request, _org_draft(request, draft_id))


@console_view(Capability.MANAGE_TOOLS)
@require_POST
def draft_apply_view(request: HttpRequest, draft_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    draft = _org_draft(request, draft_id)
    form = ApplyForm(request.POST)
    if not form.is_valid():
        return _draft_page(request, draft, form, status=400)
    content = form.cleaned_data["content"] if "content" in request.POST else None
    try:
        version = draft_apply(
            draft=draft,
            actor=membership,
            content=content,
            expected_version=form.cleaned_data["base_version"],
        )
    except DomainError as exc:
        report(request, exc)
        return _draft_page(request, draft, form, status=exc.status)
    assert draft.tool is not None  # noqa: S101 (draft_apply refuses a draft without a tool)
    messages.success(
        request, f"The draft is now the usage guide of {draft.tool.name} (version {version.version})."
    )
    return redirect("console:tool_guide", tool_id=draft.tool.id)


@console_view(Capability.MANAGE_TOOLS)
@require_POST
def draft_discard_view(request: HttpRequest, draft_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    draft = _org_draft(request, draft_id)
    try:
        draft_discard(draft=draft, actor=membership)
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(request, "Draft discarded.")
    if draft.tool is not None:
        return redirect("console:tool_guide", tool_id=draft.tool.id)
    return redirect("console:tools")


# --- the live stream (server-sent events) ----------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    status: str
    content: str
    error: str
    model: str
    source_url: str
    started: datetime

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def _release_connection() -> None:
    # A stream stays open for up to two minutes: it must not pin a database connection meanwhile.
    if not connection.in_atomic_block:
        connection.close()


def _row(draft_id: uuid.UUID) -> _Row | None:
    values = (
        GuideDraft.objects.filter(pk=draft_id)
        .values("status", "content", "error", "model", "source_url", "started_at", "created_at")
        .first()
    )
    _release_connection()
    if values is None:
        return None
    return _Row(
        status=values["status"],
        content=values["content"],
        error=values["error"],
        model=values["model"],
        source_url=values["source_url"],
        started=values["started_at"] or values["created_at"],
    )


def _event(event: str, data: dict[str, Any]) -> bytes:
    return streams.StreamEvent(id=streams.START, event=event, data=data).sse()


def _from_row(draft_id: uuid.UUID, row: _Row, *, with_text: bool) -> Iterator[bytes]:
    """The end of a stream told from the database (the live stream expired or was unavailable)."""
    if with_text:
        yield _event(
            "meta", {"model": row.model, "source_url": row.source_url, "started": row.started.isoformat()}
        )
    if row.status == DraftStatus.DONE:
        if with_text:
            yield _event("delta", {"text": row.content})
        yield _event("done", {"draft_id": str(draft_id), "length": len(row.content)})
    else:
        yield _event("error", {"message": row.error or "The draft failed."})


def _follow(draft_id: uuid.UUID, row: _Row, last_id: str) -> Iterator[bytes]:
    yield b"retry: 3000\n\n"
    stream = stream_name(draft_id)
    deadline = time.monotonic() + STREAM_SECONDS
    cursor, sent_text = last_id, last_id != streams.START
    settled = row.finished  # the row said finished: the stream has one more chance to tell it
    while True:
        remaining = int((deadline - time.monotonic()) * 1000)
        if remaining <= 0:
            return
        try:
            events: list[streams.StreamEvent] | None = streams.follow(
                stream, cursor, 1 if settled else min(IDLE_MS, remaining)
            )
        except streams.StreamUnavailable:
            events = None
        for event in events or []:
            cursor = event.id
            sent_text = sent_text or event.event == "delta"
            yield event.sse()
            if event.terminal:
                return
        if events:
            continue
        if settled:
            yield from _from_row(draft_id, row, with_text=not sent_text)
            return
        current = _row(draft_id)
        if current is None:
            yield _event("error", {"message": "This draft was discarded."})
            return
        if current.finished:
            # The final event is published just after the commit: one more short look, then the row.
            row, settled = current, True
            time.sleep(0.2)
            continue
        if events is None:
            time.sleep(POLL_SECONDS)  # no stream store: poll the row until it finishes
        yield b": still writing\n\n"


@console_view()
@require_GET
def draft_stream_view(request: HttpRequest, draft_id: uuid.UUID) -> HttpResponse | StreamingHttpResponse:
    draft = _org_draft(request, draft_id)
    row = _Row(
        status=draft.status,
        content=draft.content,
        error=draft.error,
        model=draft.model,
        source_url=draft.source_url,
        started=draft.started_at or draft.created_at,
    )
    last_id = request.headers.get("Last-Event-ID", "")
    _release_connection()
    response = StreamingHttpResponse(
        _follow(draft.id, row, last_id if streams.valid_event_id(last_id) else streams.START),
        content_type="text/event-stream; charset=utf-8",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


urlpatterns = [
    path("drafts/new", draft_create_view, name="draft_create"),
    path("drafts/<uuid:draft_id>/", draft_view, name="draft"),
    path("drafts/<uuid:draft_id>/stream", draft_stream_view, name="draft_stream"),
    path("drafts/<uuid:draft_id>/apply", draft_apply_view, name="draft_apply"),
    path("drafts/<uuid:draft_id>/discard", draft_discard_view, name="draft_discard"),
]
