"""Every model registered in the admin has working pages (STYLE §11).

Generated from the admin registry: registering a model without adding a sample
row to ``world`` below fails here, loudly.
"""

from __future__ import annotations

from typing import Any

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Agent, AgentKey, Membership, Organization, Role
from audit.models import AuditEvent
from catalog.models import GuideSuggestion, Tool, ToolSuggestion
from catalog.services import tool_suggest
from grants.models import AccessGrant, Alert
from grants.services import grant_approve, grant_request, guide_suggest_as_agent
from notifications.models import DEFAULT_EVENTS, Delivery, WebhookEndpoint
from notifications.services import endpoint_create
from tests import factories
from vault.models import Secret

pytestmark = pytest.mark.django_db

REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)

#: Rows only the services create (or nobody, for the audit log): their add page is refused.
ADD_REFUSED = {
    Alert,
    AuditEvent,
    Secret,
    AgentKey,
    ToolSuggestion,
    GuideSuggestion,
    EmailAddress,
    Authenticator,
    WebhookEndpoint,
    Delivery,
}

#: What a staff member who owns one organization sees: only its rows, and nothing of the
#: tables that cannot be scoped to an organization.
OWNER_CAN_LIST = {
    Organization,
    Membership,
    Agent,
    AgentKey,
    Tool,
    ToolSuggestion,
    GuideSuggestion,
    AccessGrant,
    WebhookEndpoint,
    Delivery,
    Alert,
}


def url(model: type[Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_every_registered_model_has_a_changelist_an_add_page_and_a_change_page(model, world, console):
    if model not in world:
        pytest.fail(
            f"{model._meta.label} is registered in the admin but has no sample row in world(); add one."
        )
    obj = world[model]

    assert console.get(url(model, "changelist")).status_code == 200
    assert console.get(url(model, "add")).status_code == (403 if model in ADD_REFUSED else 200)
    assert console.get(url(model, "change", quote(obj.pk))).status_code == 200


def test_the_smoke_lists_name_only_registered_models():
    assert set(REGISTERED) >= ADD_REFUSED | OWNER_CAN_LIST


@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_a_staff_owner_sees_their_organization_and_not_the_unscoped_tables(model, org, world, staff_member):
    owner = staff_member((org, Role.OWNER))
    expected = 200 if model in OWNER_CAN_LIST else 403
    assert owner.get(url(model, "changelist")).status_code == expected
    assert owner.get(url(model, "change", quote(world[model].pk))).status_code in (
        (200,) if model in OWNER_CAN_LIST else (302, 403)
    )


def test_a_staff_member_sees_only_the_rows_of_their_organizations(
    org, other_org, issued, stranger, staff_member
):
    owner = staff_member((org, Role.OWNER))
    page = owner.get(url(Agent, "changelist")).content.decode()
    assert issued.agent.name in page
    assert stranger.agent.name not in page
    # Another organization's row is not found at all, not even by its id.
    response = owner.get(url(Agent, "change", stranger.agent.pk))
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def _populate() -> None:
    """One more organization with a row of every registered model, made through the services."""
    org = factories.make_org()
    factories.make_member(org, Role.APPROVER, user=factories.make_user(is_staff=True))
    issued = factories.make_agent(org)
    tool = factories.make_tool(org)
    grant = grant_request(agent=issued.agent, tool=tool, reason="For the weekly report.")
    grant_approve(grant=grant, reviewer=factories.OPERATOR, expires_at=None)
    tool_suggest(agent=issued.agent, name=f"Wiki {org.slug}", url="", reason="Docs live there.")
    guide_suggest_as_agent(agent=issued.agent, tool=tool, learned="Use the sandbox first.", why="Safer.")
    person = factories.make_user()
    EmailAddress.objects.create(user=person, email=person.email, verified=True)
    TOTP.activate(person, generate_totp_secret())
    endpoint_create(
        org=org,
        actor=factories.OPERATOR,
        name=f"#requests-{org.slug}",
        kind="generic",
        url=f"https://hooks.example.com/{factories.new_credential('hook')}",
        events=DEFAULT_EVENTS,
    )


@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_no_changelist_makes_more_queries_for_more_rows(model, console):
    changelist = url(model, "changelist")
    _populate()
    console.get(changelist)  # warm per-process caches (content types, sessions)
    with CaptureQueriesContext(connection) as few:
        assert console.get(changelist).status_code == 200
    for _ in range(3):
        _populate()
    with CaptureQueriesContext(connection) as many:
        assert console.get(changelist).status_code == 200
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
