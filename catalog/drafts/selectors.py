"""Scoped reads for usage-guide drafts."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from django.http import Http404

from catalog.models import DraftStatus, GuideDraft


def guide_drafts_for_org(org_id: uuid.UUID) -> QuerySet[GuideDraft]:
    return GuideDraft.objects.filter(org_id=org_id)


def finished_draft_for_prefill(org_id: uuid.UUID, raw_id: str | None) -> GuideDraft | None:
    """The finished draft that ``?draft=<id>`` names on the new-tool form, or None when absent.

    Another organization's draft, an unfinished one or a malformed id is a 404.
    """
    if not raw_id:
        return None
    try:
        draft_id = uuid.UUID(raw_id)
    except ValueError:
        raise Http404("No such draft.") from None
    draft = (
        guide_drafts_for_org(org_id)
        .filter(id=draft_id, status=DraftStatus.DONE)
        .select_related("suggestion")
        .first()
    )
    if draft is None:
        raise Http404("No such finished draft.")
    return draft
