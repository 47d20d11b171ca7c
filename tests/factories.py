"""Test data through the real services, so every row is one the product could make."""

from __future__ import annotations

import secrets
from typing import Any

from factory.declarations import PostGenerationMethodCall, Sequence
from factory.django import DjangoModelFactory
from factory.faker import Faker

from accounts.models import Membership, Organization, Role, User
from accounts.permissions import Operator
from accounts.services import IssuedAgent, agent_create, org_create
from catalog.models import AuthType, CredentialMode, Tool
from grants.services import tool_add

OPERATOR = Operator(label="tests")


class UserFactory(DjangoModelFactory[User]):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = Sequence(lambda n: f"person{n}@example.com")
    name = Faker("name")
    password = PostGenerationMethodCall("set_password", "correct-horse-battery")


def make_user(**fields: Any) -> User:
    user = UserFactory.create(**fields)
    user.save()
    return user


def make_org(name: str | None = None) -> Organization:
    return org_create(name=name or f"Org {secrets.token_hex(3)}", actor=OPERATOR)


def make_member(org: Organization, role: Role, user: User | None = None) -> Membership:
    user = user or make_user()
    membership = Membership.objects.create(org=org, user=user, role=role)
    return Membership.objects.select_related("user").get(pk=membership.pk)


def make_agent(org: Organization, name: str | None = None, **kwargs: Any) -> IssuedAgent:
    """An agent made by the operator. Once the organization has members an agent needs a human
    owner, so unless one is given it is the longest-standing member (as an operator would pick)."""
    if "owner" not in kwargs:
        first = Membership.objects.filter(org=org).select_related("user").order_by("created_at", "id").first()
        kwargs["owner"] = first.user if first is not None else None
    return agent_create(org=org, name=name or f"agent-{secrets.token_hex(3)}", actor=OPERATOR, **kwargs)


def new_credential(prefix: str = "cred") -> str:
    return f"{prefix}_{secrets.token_urlsafe(24)}"


def make_tool(
    org: Organization,
    name: str | None = None,
    *,
    mode: str = CredentialMode.SHARED,
    credential: str | None = None,
    with_credential: bool = True,
    auth_type: str = AuthType.API_KEY,
    **kwargs: Any,
) -> Tool:
    if mode == CredentialMode.SHARED and with_credential and credential is None:
        credential = new_credential()
    return tool_add(
        org=org,
        actor=OPERATOR,
        name=name or f"Tool {secrets.token_hex(3)}",
        credential_mode=mode,
        credential=credential if mode == CredentialMode.SHARED else None,
        auth_type=auth_type,
        **kwargs,
    ).tool
