"""Scheduled work for the audit log (Celery beat)."""

from __future__ import annotations

from celery import shared_task

from audit.sealing import seal_checkpoints


@shared_task(name="audit.seal_checkpoints", ignore_result=True)
def seal_checkpoints_task() -> int:
    """Every minute: seal the events committed since the last checkpoint."""
    return len(seal_checkpoints())
