"""Scheduled work for grants (Celery beat)."""

from __future__ import annotations

from celery import shared_task

from grants.anomalies import anomalies_detect
from grants.lifecycle import agents_suspend_past_validity
from grants.quorum import grants_expire_quorums
from grants.reviews import grants_review_due
from grants.services import grants_expire_due


@shared_task(name="grants.expire_due_grants")
def expire_due_grants() -> int:
    """Every minute: mark grants past their expiry and delete their per-agent credentials."""
    return grants_expire_due()


@shared_task(name="grants.expire_stale_quorums")
def expire_stale_quorums() -> int:
    """Every minute: expire pending requests whose approvals fell short of the quorum in time."""
    return grants_expire_quorums()


@shared_task(name="grants.suspend_agents_past_validity")
def suspend_agents_past_validity() -> int:
    """Every minute: suspend agents past their valid_until (authentication refuses them already)."""
    return agents_suspend_past_validity()


@shared_task(name="grants.access_reviews")
def access_reviews() -> dict[str, int]:
    """Every few minutes: open reviews for old access and revoke access nobody recertified in time."""
    run = grants_review_due()
    return {"requested": run.requested, "expired": run.expired}


@shared_task(name="grants.detect_anomalies")
def detect_anomalies() -> dict[str, int]:
    """Every minute: the vend-rate and off-hours rules, and the refused-key alerts counted since."""
    run = anomalies_detect()
    return {"vend_rate": run.vend_rate, "off_hours": run.off_hours, "auth_failures": run.auth_failures}
