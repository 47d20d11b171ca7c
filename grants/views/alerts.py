"""Anomaly alerts in the console: the list (newest first) and acknowledging one.

Everyone in the organization can read them; owners, admins and approvers acknowledge
(``alert_acknowledge`` checks the role again). The kill switch itself is an organization
setting on the Members page (``accounts.views.orgs``).
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from accounts.console import console_view, membership_required, report
from accounts.permissions import Capability
from agentkey.core.errors import DomainError
from grants.anomalies import alert_acknowledge
from grants.models import Alert

ALERTS_SHOWN = 200


@console_view()
def alerts_view(request: HttpRequest) -> HttpResponse:
    membership = membership_required(request)
    alerts = Alert.objects.filter(org_id=membership.org_id).order_by("-created_at")[:ALERTS_SHOWN]
    return render(
        request,
        "console/alerts.html",
        {"section": "alerts", "alerts": alerts, "kill_switch": membership.org.anomaly_auto_suspend},
    )


@console_view(Capability.DECIDE_GRANTS)
@require_POST
def alert_acknowledge_view(request: HttpRequest, alert_id: uuid.UUID) -> HttpResponse:
    membership = membership_required(request)
    alert = get_object_or_404(Alert, id=alert_id, org_id=membership.org_id)
    try:
        alert_acknowledge(alert=alert, actor=membership)
    except DomainError as exc:
        report(request, exc)
    else:
        messages.success(request, "Alert acknowledged.")
    return redirect("console:alerts")


urlpatterns = [
    path("alerts/", alerts_view, name="alerts"),
    path("alerts/<uuid:alert_id>/acknowledge", alert_acknowledge_view, name="alert_acknowledge"),
]
