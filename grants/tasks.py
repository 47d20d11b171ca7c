"""Scheduled work for grants (Celery beat)."""

from __future__ import annotations

from celery import shared_task

from grants.services import grants_expire_due


@shared_task(name="grants.expire_due_grants")
def expire_due_grants() -> int:
    """Every minute: mark grants past their expiry and delete their per-agent credentials."""
    return grants_expire_due()
