"""State changes for usage-guide drafts: start, apply (through ``tool_guide_update``), discard.

A draft is never applied by itself: an admin reads it, edits it if needed and
applies it, which makes a new guide version like any other edit (so it can be
diffed and restored). Its provenance — model, source URL, when it was written —
stays on the draft and goes into the audit event of the apply.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta

from django.db import connections, transaction
from django.utils import timezone

from accounts.models import Organization
from accounts.permissions import Capability, HumanActor, acting_user, require
from agentkey.core import streams
from agentkey.core.errors import Conflict, FieldError, Forbidden, Message, ValidationFailed
from agentkey.core.http import UnsafeURL
from audit.models import Action
from audit.services import audit_record
from catalog.drafts import fetch
from catalog.drafts.generation import configured_model, stream_name
from catalog.models import DraftStatus, GuideDraft, GuideVersion, Tool, ToolSuggestion
from catalog.services import GUIDE_TOO_LONG, isoformat, tool_guide_update
from catalog.tasks import generate_guide_draft

logger = logging.getLogger(__name__)

URL_MAX = 500
# Drafts an organization may have in progress at once (each holds a worker for up to minutes).
IN_PROGRESS_LIMIT = 5
IN_PROGRESS_WINDOW = timedelta(minutes=15)

URL_REQUIRED = Message(
    "Enter the URL of the tool's documentation page.",
    "Use the page that explains authentication, such as https://docs.example.com/api/authentication.",
)
URL_TOO_LONG = Message("The URL is longer than 500 characters.", "Use the page's canonical, shorter URL.")
WRONG_ORGANIZATION = Message(
    "That tool or suggestion belongs to another organization.",
    "Switch to the organization that owns it.",
)
TOO_MANY_IN_PROGRESS = Message(
    "{count} drafts are already being written for this organization.",
    "Wait for them to finish (or discard them), then start another.",
)
NOT_READY = Message(
    "This draft is not finished (it is {status}).",
    "Wait until it is done; a failed draft cannot be applied — start a new one.",
)
NO_TOOL = Message(
    "This draft is not attached to a tool.",
    "Use it when you create the tool: the new-tool form can start from it.",
)
ALREADY_APPLIED = Message(
    "This draft was already applied (usage guide version {version}).",
    "Edit the usage guide itself, or start a new draft.",
)
DRAFT_GONE = Message("This draft was discarded.", "Start a new draft from the documentation URL.")
QUEUE_DOWN_TEXT = "The background queue is unavailable, so the draft could not start. Try again in a minute."
EMPTY_CONTENT = Message("The guide text is empty.", "Keep some of the draft, or discard it instead.")


# --- start -----------------------------------------------------------------------------------------


def _validated_url(source_url: str) -> str:
    url = source_url.strip()
    if not url:
        raise ValidationFailed(URL_REQUIRED, details=[FieldError("source_url", URL_REQUIRED.error)])
    if len(url) > URL_MAX:
        raise ValidationFailed(URL_TOO_LONG, details=[FieldError("source_url", URL_TOO_LONG.error)])
    try:
        fetch.check(url)
    except UnsafeURL as exc:
        # The same checks run again, on every redirect hop, when the page is fetched.
        raise ValidationFailed(exc.message, details=[FieldError("source_url", exc.error)]) from None
    return url


def draft_start(
    *,
    org: Organization,
    actor: HumanActor,
    source_url: str,
    tool: Tool | None = None,
    suggestion: ToolSuggestion | None = None,
) -> GuideDraft:
    """Start drafting a usage guide from ``source_url``; generation runs after commit, in the background."""
    require(actor, Capability.MANAGE_TOOLS, org.id)
    for owned in (tool, suggestion):
        if owned is not None and owned.org_id != org.id:
            raise Forbidden(WRONG_ORGANIZATION)
    url = _validated_url(source_url)
    model = configured_model()
    with transaction.atomic():
        busy = GuideDraft.objects.filter(
            org=org,
            status__in=(DraftStatus.PENDING, DraftStatus.RUNNING),
            created_at__gt=timezone.now() - IN_PROGRESS_WINDOW,
        ).count()
        if busy >= IN_PROGRESS_LIMIT:
            raise Conflict(TOO_MANY_IN_PROGRESS.format(count=busy))
        draft = GuideDraft.objects.create(
            org=org,
            tool=tool,
            suggestion=suggestion,
            source_url=url,
            model=model,
            created_by=acting_user(actor),
        )
        metadata: dict[str, str] = {"source_url": url, "model": model}
        if suggestion is not None:
            metadata["suggestion_id"] = str(suggestion.id)
        audit_record(action=Action.GUIDE_DRAFT_STARTED, actor=actor, target=draft, metadata=metadata)
        draft_id = draft.id
        transaction.on_commit(lambda: schedule(draft_id))
    return draft


def schedule(draft_id: uuid.UUID) -> None:
    """Queue the generation. Eagerly (the embedded default) it runs in a thread, never in the request."""
    if generate_guide_draft.app.conf.task_always_eager:
        thread = threading.Thread(
            target=_run_in_thread, args=(draft_id,), name=f"guide-draft-{draft_id}", daemon=True
        )
        thread.start()
        return
    try:
        # No retries: an admin waiting on a page is better told now than after minutes of reconnecting.
        generate_guide_draft.apply_async(args=(str(draft_id),), retry=False)
    except Exception:
        logger.exception("could not queue guide draft %s", draft_id)
        GuideDraft.objects.filter(pk=draft_id, status=DraftStatus.PENDING).update(
            status=DraftStatus.FAILED, error=QUEUE_DOWN_TEXT, finished_at=timezone.now()
        )


def _run_in_thread(draft_id: uuid.UUID) -> None:
    try:
        generate_guide_draft.apply(args=(str(draft_id),), throw=False)
    finally:
        connections.close_all()


# --- apply, discard --------------------------------------------------------------------------------


def draft_apply(
    *,
    draft: GuideDraft,
    actor: HumanActor,
    content: str | None = None,
    expected_version: int | None = None,
) -> GuideVersion:
    """Make the draft (as the admin left it: ``content``) the tool's usage guide, as a new version.

    ``expected_version`` is the guide version the admin had in front of them;
    a guide that changed meanwhile is a Conflict, not a silently lost edit.
    """
    require(actor, Capability.MANAGE_TOOLS, draft.org_id)
    if draft.tool_id is None:
        raise ValidationFailed(NO_TOOL)
    with transaction.atomic():
        locked = GuideDraft.objects.select_for_update().filter(pk=draft.pk).first()
        if locked is None:
            raise Conflict(DRAFT_GONE)
        if locked.status != DraftStatus.DONE:
            raise Conflict(NOT_READY.format(status=locked.status))
        if locked.applied_version is not None:
            raise Conflict(ALREADY_APPLIED.format(version=locked.applied_version))
        text = (locked.content if content is None else content).replace("\r\n", "\n")
        if not text.strip():
            raise ValidationFailed(EMPTY_CONTENT, details=[FieldError("content", EMPTY_CONTENT.error)])
        if len(text) > 20000:
            raise ValidationFailed(GUIDE_TOO_LONG, details=[FieldError("content", GUIDE_TOO_LONG.error)])
        tool = Tool.objects.get(pk=draft.tool_id)
        version = tool_guide_update(tool=tool, actor=actor, content=text, expected_version=expected_version)
        locked.applied_at = timezone.now()
        locked.applied_version = version.version
        locked.save(update_fields=["applied_at", "applied_version"])
        audit_record(
            action=Action.GUIDE_DRAFT_APPLIED,
            actor=actor,
            target=locked,
            metadata={
                "version": version.version,
                "model": locked.model,
                "source_url": locked.source_url,
                "drafted_at": isoformat(locked.finished_at or locked.created_at),
                "edited": text != locked.content,
            },
        )
    draft.applied_at, draft.applied_version = locked.applied_at, locked.applied_version
    if draft.tool is not None:
        draft.tool.usage_guide, draft.tool.current_guide_version = text, version.version
    return version


def draft_discard(*, draft: GuideDraft, actor: HumanActor) -> None:
    """Delete a draft (a running one too: its task then finds nothing to save)."""
    require(actor, Capability.MANAGE_TOOLS, draft.org_id)
    with transaction.atomic():
        deleted, _ = GuideDraft.objects.filter(pk=draft.pk).delete()
        if not deleted:
            raise Conflict(DRAFT_GONE)
        audit_record(
            action=Action.GUIDE_DRAFT_DISCARDED,
            actor=actor,
            target=draft,
            metadata={"status": draft.status, "model": draft.model, "source_url": draft.source_url},
        )
        stream = stream_name(draft.id)
        transaction.on_commit(lambda: _forget(stream))


def _forget(stream: str) -> None:
    try:
        streams.delete(stream)
    except streams.StreamUnavailable:
        logger.warning("could not delete the stream of a discarded draft; it expires on its own")
