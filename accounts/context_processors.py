"""Template context for the console: the active organization, the person's organizations, their role."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.console import can, membership_of
from accounts.models import Membership
from accounts.permissions import Capability


def console(request: HttpRequest) -> dict[str, Any]:
    if request.path.startswith(("/api/", "/mcp", "/admin/")):
        return {}
    membership = membership_of(request)
    if membership is None:
        return {"membership": None}
    return {
        "membership": membership,
        "active_org": membership.org,
        "my_memberships": lambda: list(
            Membership.objects.select_related("org").filter(user_id=membership.user_id).order_by("org__name")
        ),
        "may": {capability.value: can(membership, capability) for capability in Capability},
    }
