"""Celery tasks for notifications. Tasks take ids and re-read the rows (STYLE §4)."""

from __future__ import annotations

import uuid

from celery import shared_task

from notifications import dispatch
from notifications.services import deliveries_sweep, delivery_attempt


@shared_task(name="notifications.deliver", ignore_result=True)
def deliver(delivery_id: str) -> str:
    """Send one delivery; on a retryable failure, queue itself again for when it is due."""
    attempt = delivery_attempt(delivery_id=uuid.UUID(str(delivery_id)))
    if attempt.retry_in is not None:
        # If this publish fails, the sweep job queues the row once it is due.
        dispatch.requeue(str(delivery_id), countdown=attempt.retry_in)
    return attempt.status


@shared_task(name="notifications.sweep_deliveries", ignore_result=True)
def sweep_deliveries() -> dict[str, int]:
    """Every minute (beat): queue again what a broker outage or a dead worker lost."""
    swept = deliveries_sweep()
    queued = sum(dispatch.requeue(str(delivery_id)) for delivery_id in swept.requeue)
    return {"queued": queued, "reset": swept.reset, "gave_up": swept.gave_up, "pruned": swept.pruned}
