"""The audit log: filters, keyset pagination, streamed exports.

Built to stay fast on millions of events (bench/audit_pages.py measures it):

- Every query starts with ``org_id = <active organization>``, whatever the query
  string says, so another organization's events can never be listed or exported.
- Each filter has its index: (org_id, -id), (org_id, action, -id),
  (org_id, actor_id, -id), (org_id, agent_id, -id), (org_id, tool_id, -id). A page
  is one index range scan that stops after ``page size + 1`` rows.
- Pagination is by keyset (``?before=<id>``), never OFFSET, and nothing counts the
  whole log.
- A date range becomes an id range: ids grow with time, so one lookup per bound on
  the (created_at) index finds the first id at or after the bound, and the page
  query stays a range scan on the organization's index. The bound is exact up to
  the instant between an event being stamped and being inserted (microseconds),
  which can only reorder events stamped within that instant of midnight UTC.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.text import Truncator

from accounts.console import console_view, membership_required
from accounts.models import Membership
from accounts.permissions import Capability
from accounts.selectors import agents_for_org
from audit.models import Action, ActorType, AuditEvent
from audit.services import audit_export_record
from catalog.selectors import tools_for_org

DEFAULT_PAGE_SIZE = 50
DEFAULT_EXPORT_CHUNK = 2000
BIGINT_MAX = 2**63 - 1
#: The actor filter's value for work done by operator tooling and scheduled jobs (actor_id "").
SYSTEM_ACTOR = "system"
SUMMARY_ITEMS = 4
SUMMARY_CHARS = 80

TARGET_TYPES = {
    "agent": "Agent",
    "tool": "Tool",
    "access_grant": "Access grant",
    "organization": "Organization",
    "membership": "Member",
    "invitation": "Invitation",
    "user": "Person",
    "tool_suggestion": "Tool suggestion",
    "guide_suggestion": "Usage-guide suggestion",
    "webhook_endpoint": "Notification channel",
}

EXPORT_FIELDS = (
    "id",
    "created_at",
    "org_id",
    "action",
    "action_label",
    "actor_type",
    "actor_id",
    "actor_label",
    "target_type",
    "target_id",
    "target_label",
    "agent_id",
    "tool_id",
    "metadata",
    "ip",
    "request_id",
    "signature",
)

_ACTOR_ID = re.compile(r"[0-9]{1,20}")
# Spreadsheets run a cell that starts with one of these as a formula (CSV injection):
# labels can come from agents (a suggested tool's name), so such cells are quoted.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def page_size() -> int:
    return max(1, int(getattr(settings, "AGENTKEY_AUDIT_PAGE_SIZE", DEFAULT_PAGE_SIZE)))


def export_chunk() -> int:
    return max(1, int(getattr(settings, "AGENTKEY_AUDIT_EXPORT_CHUNK", DEFAULT_EXPORT_CHUNK)))


# --- filters ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    value: str
    label: str


ACTION_OPTIONS = [
    Option(str(value), str(label)) for value, label in sorted(Action.choices, key=lambda c: str(c[1]))
]


class AuditFilterForm(forms.Form):
    """The GET filters. Parses only; the page renders the pickers from the organization's lists."""

    actor = forms.CharField(required=False, max_length=64)
    action = forms.ChoiceField(
        required=False,
        choices=[("", "Any action"), *((o.value, o.label) for o in ACTION_OPTIONS)],
    )
    agent = forms.UUIDField(required=False)
    tool = forms.UUIDField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # "from" is a Python keyword, so these two are added by name.
        for name, label in (("from", "From"), ("to", "To")):
            self.fields[name] = forms.DateField(required=False, label=label, input_formats=["%Y-%m-%d"])

    def clean_actor(self) -> str | None:
        value: str = self.cleaned_data.get("actor") or ""
        if not value:
            return None
        if value == SYSTEM_ACTOR or _ACTOR_ID.fullmatch(value):
            return value
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise forms.ValidationError("Choose an actor from the list.") from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("from"), cleaned.get("to")
        if start and end and start > end:
            self.add_error("to", "The end date is before the start date.")
        return cleaned


@dataclass(frozen=True)
class Filters:
    actor: str | None = None
    action: str = ""
    agent: uuid.UUID | None = None
    tool: uuid.UUID | None = None
    start: date | None = None
    end: date | None = None

    @classmethod
    def of(cls, form: AuditFilterForm) -> Filters:
        data = form.cleaned_data
        return cls(
            actor=data.get("actor"),
            action=data.get("action") or "",
            agent=data.get("agent"),
            tool=data.get("tool"),
            start=data.get("from"),
            end=data.get("to"),
        )

    def query(self) -> dict[str, str]:
        """The filters as a query string dictionary (for links: Older, Newest, exports)."""
        pairs = {
            "actor": self.actor or "",
            "action": self.action,
            "agent": str(self.agent or ""),
            "tool": str(self.tool or ""),
            "from": self.start.isoformat() if self.start else "",
            "to": self.end.isoformat() if self.end else "",
        }
        return {key: value for key, value in pairs.items() if value}

    @property
    def active(self) -> bool:
        return bool(self.query())


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _first_id_from(moment: datetime) -> int | None:
    """The id of the first event stamped at or after ``moment``: one probe of the created_at index.

    Not scoped to the organization on purpose: ids are global and grow with time, so the
    global boundary is the organization's boundary too, and probing the global index never
    has to skip other organizations' rows. The id is used only inside the query.
    """
    return (
        AuditEvent.objects.filter(created_at__gte=moment)
        .order_by("created_at", "id")
        .values_list("id", flat=True)
        .first()
    )


def events_for(org_id: uuid.UUID, filters: Filters) -> QuerySet[AuditEvent]:
    """The organization's events matching ``filters`` (unordered). 0-2 index probes for a date range."""
    events = AuditEvent.objects.filter(org_id=org_id)
    if filters.actor is not None:
        events = events.filter(actor_id="" if filters.actor == SYSTEM_ACTOR else filters.actor)
    if filters.action:
        events = events.filter(action=filters.action)
    if filters.agent is not None:
        events = events.filter(agent_id=filters.agent)
    if filters.tool is not None:
        events = events.filter(tool_id=filters.tool)
    if filters.start is not None:
        low = _first_id_from(_midnight(filters.start))
        if low is None:
            return events.none()
        events = events.filter(id__gte=low)
    if filters.end is not None and filters.end < date.max:  # the last day has no day after it
        high = _first_id_from(_midnight(filters.end + timedelta(days=1)))
        if high is not None:
            events = events.filter(id__lt=high)
    return events


# --- rows as people read them ----------------------------------------------------------------------


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def metadata_summary(metadata: Any) -> list[tuple[str, str]]:
    """A few ``key: value`` pairs, each short. Templates escape them (metadata holds no secrets)."""
    if not isinstance(metadata, Mapping):
        return [("value", Truncator(json.dumps(metadata, ensure_ascii=False)).chars(SUMMARY_CHARS))]
    pairs = []
    for key, value in list(metadata.items())[:SUMMARY_ITEMS]:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            text = ", ".join(value)
        elif isinstance(value, str):
            text = value
        else:
            text = json.dumps(value, ensure_ascii=False, sort_keys=True)
        pairs.append((Truncator(str(key).replace("_", " ")).chars(40), Truncator(text).chars(SUMMARY_CHARS)))
    return pairs


_ZERO = uuid.UUID(int=0)


class Links:
    """Links to agent and tool pages without a ``reverse()`` per row (the page has 50 rows)."""

    def __init__(self) -> None:
        self.agent = reverse("console:agent", args=[_ZERO])
        self.tool = reverse("console:tool", args=[_ZERO])

    def to(self, kind: str, value: str) -> str:
        target = _uuid_or_none(value) if value else None
        if target is None:
            return ""
        pattern = self.agent if kind == "agent" else self.tool if kind == "tool" else ""
        return pattern.replace(str(_ZERO), str(target)) if pattern else ""


@dataclass(frozen=True)
class EventRow:
    """One event as the page shows it, computed once (templates resolve attributes cheaply)."""

    event: AuditEvent
    action_label: str
    actor: str
    actor_type_label: str
    actor_filter: str
    actor_url: str
    target_type_label: str
    target_url: str
    summary: list[tuple[str, str]]
    details: str

    @classmethod
    def of(cls, event: AuditEvent, links: Links) -> EventRow:
        try:
            actor_type = str(ActorType(event.actor_type).label)
        except ValueError:
            actor_type = event.actor_type
        kind = event.target_type
        return cls(
            event=event,
            action_label=event.action_label,
            actor=event.actor_label or actor_type,
            actor_type_label=actor_type,
            actor_filter=event.actor_id or SYSTEM_ACTOR,
            actor_url=links.to("agent", event.actor_id) if event.actor_type == ActorType.AGENT else "",
            target_type_label=TARGET_TYPES.get(kind, kind.replace("_", " ").capitalize()),
            target_url=links.to(kind, event.target_id),
            summary=metadata_summary(event.metadata),
            details=json.dumps(event.metadata, ensure_ascii=False, indent=2, sort_keys=True),
        )


# --- the page --------------------------------------------------------------------------------------


def _options(
    members: list[tuple[int, str]],
    agents: list[tuple[uuid.UUID, str]],
    tools: list[tuple[uuid.UUID, str]],
    filters: Filters,
) -> dict[str, Any]:
    """What the pickers list: the organization's people, agents and tools (and a chosen id that
    is no longer among them, such as a removed member, so the filter stays visible)."""
    people = [Option(str(user_id), email) for user_id, email in members]
    agent_options = [Option(str(agent_id), name) for agent_id, name in agents]
    tool_options = [Option(str(tool_id), name) for tool_id, name in tools]
    system = [Option(SYSTEM_ACTOR, "System (operator tools, scheduled jobs)")]

    def keep(chosen: str, *lists: list[Option]) -> list[Option]:
        if chosen and not any(o.value == chosen for options in lists for o in options):
            return [Option(chosen, f"{chosen} (not in this organization now)")]
        return []

    return {
        "actors": {
            "People": people,
            "Agents": agent_options,
            "Other": system + keep(filters.actor or "", people, agent_options, system),
        },
        "agents": agent_options + keep(str(filters.agent or ""), agent_options),
        "tools": tool_options + keep(str(filters.tool or ""), tool_options),
    }


def _cursor(request: HttpRequest) -> int | None:
    value = request.GET.get("before", "")
    if not (value.isascii() and value.isdigit()) or len(value) > 19:
        return None
    cursor = int(value)
    return cursor if 0 < cursor <= BIGINT_MAX else None


def _page_url(query: dict[str, str], **extra: str) -> str:
    params = {**query, **extra}
    return reverse("console:audit") + ("?" + urlencode(params) if params else "")


@console_view(Capability.READ_AUDIT)
def audit_view(request: HttpRequest) -> HttpResponse:
    org_id = membership_required(request).org_id
    form = AuditFilterForm(request.GET)
    valid = form.is_valid()
    filters = Filters.of(form) if valid else Filters()
    size = page_size()
    before = _cursor(request)
    rows: list[EventRow] = []
    older = ""
    if valid:
        events = events_for(org_id, filters)
        if before is not None:
            events = events.filter(id__lt=before)
        found = list(events.order_by("-id")[: size + 1])
        links = Links()
        rows = [EventRow.of(e, links) for e in found[:size]]
        if len(found) > size:
            older = _page_url(filters.query(), before=str(found[size - 1].id))
    query = filters.query()
    context = {
        "section": "audit",
        "form": form,
        "filters": filters,
        "rows": rows,
        "older_url": older,
        "newest_url": _page_url(query) if before is not None else "",
        "paged": before is not None,
        "export_query": urlencode(query),
        "page_size": size,
        "audit_url": reverse("console:audit"),
        "chosen": {key: query.get(key, "") for key in ("actor", "action", "agent", "tool")},
        "actions": ACTION_OPTIONS,
    }
    partial = bool(request.htmx and not request.htmx.history_restore_request)  # type: ignore[attr-defined]
    context["partial"] = partial
    if partial:
        response = render(request, "console/audit/_results.html", context)
    else:
        # Only the columns the pickers show (a tool row carries its whole usage guide).
        members = list(
            Membership.objects.filter(org_id=org_id)
            .order_by("user__email")
            .values_list("user_id", "user__email")
        )
        agents = list(agents_for_org(org_id).order_by("name", "id").values_list("id", "name"))
        tools = list(tools_for_org(org_id).order_by("name", "id").values_list("id", "name"))
        context.update(_options(members, agents, tools, filters))
        response = render(request, "console/audit.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


# --- exports ---------------------------------------------------------------------------------------


def _record(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "created_at": event.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "org_id": str(event.org_id) if event.org_id else None,
        "action": event.action,
        "action_label": event.action_label,
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "target_label": event.target_label,
        "agent_id": str(event.agent_id) if event.agent_id else None,
        "tool_id": str(event.tool_id) if event.tool_id else None,
        "metadata": event.metadata,
        "ip": event.ip,
        "request_id": event.request_id,
        "signature": event.signature,
    }


def chunks(events: QuerySet[AuditEvent], size: int) -> Iterator[list[AuditEvent]]:
    """The events oldest first, ``size`` at a time: one keyset query per chunk.

    The newest matching id is fixed first, so the export is the log as it stood
    when it started, however many events arrive while it streams. Keyset chunks
    rather than ``.iterator()``: in autocommit, Django's server-side cursor is
    declared WITH HOLD, which makes PostgreSQL compute the whole result before
    the first row; here each chunk is a short index range scan and no cursor or
    transaction stays open while the client downloads.
    """
    ceiling = events.order_by("-id").values_list("id", flat=True).first()
    if ceiling is None:
        return
    after = 0
    while True:
        batch = list(events.filter(id__gt=after, id__lte=ceiling).order_by("id")[:size])
        if batch:
            yield batch
        if len(batch) < size:
            return
        after = batch[-1].id


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_stream(events: QuerySet[AuditEvent], size: int) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_FIELDS)
    yield buffer.getvalue()
    for batch in chunks(events, size):
        buffer.seek(0)
        buffer.truncate()
        for event in batch:
            record = _record(event)
            record["metadata"] = json.dumps(record["metadata"], ensure_ascii=False, sort_keys=True)
            writer.writerow([_cell(record[name]) for name in EXPORT_FIELDS])
        yield buffer.getvalue()


def jsonl_stream(events: QuerySet[AuditEvent], size: int) -> Iterator[str]:
    for batch in chunks(events, size):
        yield "".join(json.dumps(_record(event), ensure_ascii=False) + "\n" for event in batch)


EXPORT_FORMATS = {
    "csv": ("text/csv; charset=utf-8", csv_stream),
    "jsonl": ("application/x-ndjson; charset=utf-8", jsonl_stream),
}


@console_view(Capability.READ_AUDIT)
def audit_export_view(request: HttpRequest) -> StreamingHttpResponse | HttpResponseRedirect:
    """The current filters' events, oldest first, as CSV or JSON Lines, streamed."""
    membership = membership_required(request)
    fmt = request.GET.get("format", "csv")
    form = AuditFilterForm(request.GET)
    if fmt not in EXPORT_FORMATS or not form.is_valid():
        # Back to the page, which shows what is wrong with the filters.
        query = request.GET.copy()
        query.pop("format", None)
        return redirect(reverse("console:audit") + ("?" + query.urlencode() if query else ""))
    content_type, stream = EXPORT_FORMATS[fmt]
    filters = {key: str(value) for key, value in request.GET.items() if key != "format"}
    recorded = audit_export_record(
        actor=membership, org_id=membership.org_id, export_format=fmt, filters=filters
    )
    # The log as it stood before this export: its own record is the next event.
    events = events_for(membership.org_id, Filters.of(form)).filter(id__lt=recorded.id)
    response = StreamingHttpResponse(stream(events, export_chunk()), content_type=content_type)
    stamp = timezone.now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    filename = f"agentkey-audit-{membership.org.slug}-{stamp}.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


urlpatterns = [
    path("audit/", audit_view, name="audit"),
    path("audit/export", audit_export_view, name="audit_export"),
]
