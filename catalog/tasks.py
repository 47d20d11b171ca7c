"""Background work for the catalog (Celery)."""

from __future__ import annotations

import uuid

from celery import shared_task

from catalog.drafts import generation


@shared_task(name="catalog.generate_guide_draft")
def generate_guide_draft(draft_id: str) -> str:
    """Fetch a documentation page and write a usage-guide draft from it, streaming the chunks.

    Takes the draft's id and re-reads the row; a draft that is gone, or already
    taken by another worker, is skipped quietly.
    """
    return generation.run(uuid.UUID(str(draft_id)))
