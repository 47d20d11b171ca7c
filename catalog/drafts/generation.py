"""Writing one draft: the body of the Celery task ``catalog.generate_guide_draft``.

claim (pending → running, atomically) → fetch the page (SSRF-safe client) →
readable text → the model's streamed answer, or the offline drafter → every
chunk published to the draft's stream as it arrives → the content saved once,
at the end, in the same transaction as its audit event → ``done``. Any failure
marks the draft failed with a short, safe message and no content, then
publishes ``error``. The stream is a live view; the database row is the record.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from agentkey.core import streams
from agentkey.core.http import FetchFailed, UnsafeURL
from audit.models import Action
from audit.services import SystemActor, audit_record
from catalog.drafts import fetch, llm, offline
from catalog.drafts.errors import DRAFT_TOO_LONG, INTERNAL, MODEL_EMPTY, DraftFailed
from catalog.drafts.prompt import Subject, messages
from catalog.models import DraftStatus, GuideDraft

logger = logging.getLogger(__name__)

OFFLINE = "offline"
GUIDE_LIMIT = 20_000
# A draft still "running" after this long lost its worker; a redelivered task may take it over.
STALE_AFTER = timedelta(minutes=10)
DRAFTER = SystemActor(label="AgentKey guide drafter")


def stream_name(draft_id: uuid.UUID | str) -> str:
    return f"guide-draft:{draft_id}"


def configured_model() -> str:
    """The model drafts are written with: the configured one, or "offline" without base URL and model."""
    if settings.AGENTKEY_LLM_BASE_URL and settings.AGENTKEY_LLM_MODEL:
        return str(settings.AGENTKEY_LLM_MODEL)[:200]
    return OFFLINE


def endpoint() -> llm.Endpoint:
    return llm.Endpoint(
        base_url=settings.AGENTKEY_LLM_BASE_URL,
        model=settings.AGENTKEY_LLM_MODEL,
        api_key=settings.AGENTKEY_LLM_API_KEY,
        connect_timeout=float(settings.AGENTKEY_LLM_CONNECT_TIMEOUT),
        read_timeout=float(settings.AGENTKEY_LLM_READ_TIMEOUT),
        deadline_seconds=float(settings.AGENTKEY_LLM_TIMEOUT),
    )


def subject_of(draft: GuideDraft) -> Subject:
    """Public facts about the tool: its name, website and credential *type*. Never its credential:
    this module does not import the vault, and the tool's secret is not even loaded."""
    if draft.tool is not None:
        tool = draft.tool
        return Subject(tool.name, tool.url, tool.get_auth_type_display(), draft.source_url)
    if draft.suggestion is not None:
        return Subject(draft.suggestion.name, draft.suggestion.url, "unknown", draft.source_url)
    host = urlsplit(draft.source_url).hostname or ""
    return Subject(host, "", "unknown", draft.source_url)


def _publish(stream: str, event: str, data: dict[str, Any]) -> None:
    """Publish if the stream store is up; a viewer then falls back to the database row."""
    try:
        streams.publish(stream, event, data)
    except streams.StreamUnavailable as exc:
        logger.warning("guide draft stream %s unavailable (%s); the page falls back to polling", stream, exc)


def _release_connection() -> None:
    # The fetch and the model can take minutes; hold no database connection meanwhile.
    if not connection.in_atomic_block:
        connection.close()


def _claim(draft_id: uuid.UUID) -> GuideDraft | None:
    now = timezone.now()
    claimable = Q(status=DraftStatus.PENDING) | Q(
        status=DraftStatus.RUNNING, started_at__lt=now - STALE_AFTER
    )
    claimed = GuideDraft.objects.filter(claimable, pk=draft_id).update(
        status=DraftStatus.RUNNING, started_at=now, error=""
    )
    if not claimed:
        return None
    return (
        GuideDraft.objects.select_related("tool", "suggestion")
        .defer("tool__usage_guide", "tool__secret")
        .filter(pk=draft_id)
        .first()
    )


def _chunks(draft: GuideDraft, page_text: str) -> Iterator[str]:
    subject = subject_of(draft)
    if draft.model == OFFLINE:
        return offline.draft(subject, page_text)
    return llm.stream_chat(endpoint(), messages(subject, page_text))


def run(draft_id: uuid.UUID) -> str:
    """Write one draft. Returns its final status (or "skipped" when it is gone or taken)."""
    draft = _claim(draft_id)
    if draft is None:
        return "skipped"
    stream = stream_name(draft.id)
    _reset_stream(stream)
    started = draft.started_at or timezone.now()
    _publish(
        stream,
        "meta",
        {"model": draft.model, "source_url": draft.source_url, "started": started.isoformat()},
    )
    _release_connection()
    try:
        page_text = fetch.fetch_text(draft.source_url)
        parts: list[str] = []
        size = 0
        for chunk in _chunks(draft, page_text):
            size += len(chunk)
            if size > GUIDE_LIMIT:
                raise DraftFailed(DRAFT_TOO_LONG.format(limit=GUIDE_LIMIT))
            parts.append(chunk)
            _publish(stream, "delta", {"text": chunk})
        content = "".join(parts).strip()
        if not content:
            raise DraftFailed(MODEL_EMPTY)
    except DraftFailed as exc:
        return _fail(draft, stream, exc.text)
    except (UnsafeURL, FetchFailed) as exc:
        return _fail(draft, stream, f"{exc.message.error} {exc.message.hint}"[:500])
    except Exception:
        logger.exception("guide draft %s failed unexpectedly", draft.id)
        return _fail(draft, stream, DraftFailed(INTERNAL).text)
    return _finish(draft, stream, content)


def _reset_stream(stream: str) -> None:
    """A draft taken over from a lost worker starts its stream afresh (no doubled text on replay)."""
    with contextlib.suppress(streams.StreamUnavailable):
        streams.delete(stream)


def _finish(draft: GuideDraft, stream: str, content: str) -> str:
    with transaction.atomic():
        saved = GuideDraft.objects.filter(pk=draft.pk, status=DraftStatus.RUNNING).update(
            status=DraftStatus.DONE, content=content, finished_at=timezone.now(), error=""
        )
        if saved:
            audit_record(
                action=Action.GUIDE_DRAFT_COMPLETED,
                actor=DRAFTER,
                target=draft,
                metadata={"model": draft.model, "source_url": draft.source_url, "length": len(content)},
            )
    _release_connection()
    if not saved:
        return "skipped"  # discarded while it was being written
    _publish(stream, "done", {"draft_id": str(draft.id), "length": len(content)})
    return DraftStatus.DONE


def _fail(draft: GuideDraft, stream: str, message: str) -> str:
    with transaction.atomic():
        saved = GuideDraft.objects.filter(pk=draft.pk, status=DraftStatus.RUNNING).update(
            status=DraftStatus.FAILED, content="", error=message, finished_at=timezone.now()
        )
        if saved:
            audit_record(
                action=Action.GUIDE_DRAFT_FAILED,
                actor=DRAFTER,
                target=draft,
                metadata={"model": draft.model, "source_url": draft.source_url, "error": message},
            )
    _release_connection()
    if not saved:
        return "skipped"
    _publish(stream, "error", {"message": message})
    return DraftStatus.FAILED
