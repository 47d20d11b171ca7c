"""Scoped reads for notification channels and their deliveries."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.db.models import F, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from notifications.models import Delivery, DeliveryChannel, WebhookEndpoint

RECENT_DAYS = 14


def endpoints_for_org(org_id: uuid.UUID) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(org_id=org_id)


def deliveries_for_org(org_id: uuid.UUID) -> QuerySet[Delivery]:
    return Delivery.objects.filter(org_id=org_id)


def recent_deliveries_by_endpoint(
    org_id: uuid.UUID, *, per_endpoint: int = 5
) -> dict[uuid.UUID, list[Delivery]]:
    """The latest deliveries of every channel of the organization, in one query."""
    since = timezone.now() - timedelta(days=RECENT_DAYS)
    rows = (
        deliveries_for_org(org_id)
        .filter(endpoint__isnull=False, created_at__gte=since)
        .annotate(
            rank=Window(
                RowNumber(), partition_by=[F("endpoint_id")], order_by=[F("created_at").desc(), F("id")]
            )
        )
        .filter(rank__lte=per_endpoint)
        .defer("payload")
        .order_by("endpoint_id", "-created_at", "id")
    )
    grouped: dict[uuid.UUID, list[Delivery]] = {}
    for row in rows:
        if row.endpoint_id is not None:
            grouped.setdefault(row.endpoint_id, []).append(row)
    return grouped


def recent_email_deliveries(org_id: uuid.UUID, *, limit: int = 10) -> list[Delivery]:
    since = timezone.now() - timedelta(days=RECENT_DAYS)
    return list(
        deliveries_for_org(org_id)
        .filter(channel=DeliveryChannel.EMAIL, created_at__gte=since)
        .defer("payload")
        .order_by("-created_at", "id")[:limit]
    )
