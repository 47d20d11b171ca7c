"""Scoped reads for accounts."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from accounts.models import Agent, Membership, Organization, User
from accounts.permissions import HumanActor, Operator


def agents_for_org(org_id: uuid.UUID) -> QuerySet[Agent]:
    return Agent.objects.filter(org_id=org_id)


def org_by_ref(ref: str) -> Organization | None:
    """An organization by id or slug (operator tooling)."""
    try:
        return Organization.objects.filter(id=uuid.UUID(ref)).first()
    except ValueError:
        return Organization.objects.filter(slug=ref).first()


def actor_for_user(user: User, org_id: uuid.UUID) -> HumanActor | None:
    """The actor a signed-in person acts as in ``org_id``.

    A membership when they have one; a Django superuser without one acts as an
    operator (they hold the keys to the server anyway); anyone else, nobody.
    """
    membership = Membership.objects.select_related("user").filter(user=user, org_id=org_id).first()
    if membership is not None:
        return membership
    if user.is_superuser:
        return Operator(label=f"superuser {user.email}", user=user)
    return None
