"""Organizations, members, people and agents in the operator console."""

from __future__ import annotations

import pytest

from accounts.models import Agent, AgentStatus, Membership, Organization, Role, User
from audit.models import Action
from tests import factories
from tests.admin.conftest import AGENTS, action, html, messages_of, take_shown_key
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db

ORGS = "/admin/accounts/organization/"
MEMBERS = "/admin/accounts/membership/"
USERS = "/admin/accounts/user/"
KEYS = "/admin/accounts/agentkey/"


# --- agents --------------------------------------------------------------------------------------


def test_creating_an_agent_shows_its_key_once(org, console, audit_log):
    response = console.post(
        f"{AGENTS}add/", {"org": org.pk, "name": "Release-Agent", "description": "Ships."}
    )

    key = take_shown_key(response)
    assert audit_log.actions() == [Action.AGENT_CREATED]
    assert "no-store" in response["Cache-Control"]
    agent = Agent.objects.get(name="Release-Agent")
    assert agent.created_by == response.wsgi_request.user
    assert AgentClient(key).me().json()["agent_name"] == "Release-Agent"

    stored = agent.keys.get()
    for page in (
        console.get(f"{AGENTS}{agent.pk}/change/"),
        console.get(AGENTS),
        console.get(KEYS),
        console.get(f"{KEYS}{stored.pk}/change/"),
    ):
        assert page.status_code == 200
        assert key not in html(page)
        assert stored.key_hash not in html(page)
    assert stored.prefix in html(console.get(f"{AGENTS}{agent.pk}/change/"))


def test_an_agent_name_already_taken_is_an_error_message(org, agent, console, audit_log):
    response = console.post(f"{AGENTS}add/", {"org": org.pk, "name": agent.name.upper(), "description": ""})

    assert response.status_code == 200
    assert any("already exists in this organization" in m for m in messages_of(response))
    assert "will not be shown again" not in html(response)
    assert audit_log.actions() == []
    assert Agent.objects.count() == 1


def test_rotating_a_key_with_a_grace_period_keeps_the_old_key_working_until_then(issued, console, audit_log):
    agent = issued.agent
    change_page = html(console.get(f"{AGENTS}{agent.pk}/change/"))
    rotate = f"{AGENTS}{agent.pk}/rotate-key/"
    assert rotate in change_page
    form = console.get(rotate)
    assert form.status_code == 200
    for choice in ("none", "1h", "1d", "7d"):
        assert f'value="{choice}"' in html(form)

    rotated = console.post(rotate, {"grace": "1h"})

    new_key = take_shown_key(rotated)
    assert "keeps working until" in html(rotated)
    assert audit_log.actions() == [Action.AGENT_KEY_ROTATED]
    assert audit_log.new()[0].metadata["grace_seconds"] == 3600
    assert AgentClient(issued.key.plaintext).me().status_code == 200
    assert AgentClient(new_key).me().status_code == 200
    assert new_key not in html(console.get(f"{AGENTS}{agent.pk}/change/"))

    audit_log.mark()
    newest = take_shown_key(console.post(rotate, {"grace": "none"}))
    assert audit_log.actions() == [Action.AGENT_KEY_ROTATED]
    assert AgentClient(new_key).me().status_code == 401
    assert AgentClient(newest).me().status_code == 200


def test_rotating_needs_agent_rights(org, issued, staff_member, audit_log):
    approver = staff_member((org, Role.APPROVER))
    assert "rotate-key" not in html(approver.get(f"{AGENTS}{issued.agent.pk}/change/"))
    assert approver.post(f"{AGENTS}{issued.agent.pk}/rotate-key/", {"grace": "none"}).status_code == 403
    assert audit_log.actions() == []


def test_suspending_and_reactivating_agents(issued, console, audit_log):
    agent = issued.agent
    api = AgentClient(issued.key.plaintext)

    suspended = console.post(AGENTS, action("suspend_selected", agent.pk, index="0"))
    assert suspended.status_code == 302
    assert audit_log.actions() == [Action.AGENT_SUSPENDED]
    assert Agent.objects.get(pk=agent.pk).status == AgentStatus.SUSPENDED
    assert api.me().status_code == 403

    audit_log.mark()
    again = console.post(AGENTS, action("suspend_selected", agent.pk, index="0"))
    assert any("The agent is already suspended." in m for m in messages_of(again))
    assert audit_log.actions() == []

    reactivated = console.post(AGENTS, action("reactivate_selected", agent.pk, index="0"))
    assert reactivated.status_code == 302
    assert audit_log.actions() == [Action.AGENT_REACTIVATED]
    assert api.me().status_code == 200


def test_an_owner_creates_agents_only_in_their_organization(org, other_org, staff_member, audit_log):
    owner = staff_member((org, Role.OWNER))
    page = html(owner.get(f"{AGENTS}add/"))
    assert org.name in page
    assert other_org.name not in page

    refused = owner.post(f"{AGENTS}add/", {"org": other_org.pk, "name": "Sneaky", "description": ""})

    assert refused.status_code == 200
    assert "Select a valid choice" in html(refused)
    assert audit_log.actions() == []
    key = take_shown_key(owner.post(f"{AGENTS}add/", {"org": org.pk, "name": "Mine", "description": ""}))
    assert AgentClient(key).me().status_code == 200


# --- organizations and members -------------------------------------------------------------------


def test_creating_an_organization_with_its_first_owner(console, audit_log):
    person = factories.make_user()

    response = console.post(f"{ORGS}add/", {"name": "Initech", "owner_email": person.email.upper()})

    assert response.status_code == 302, messages_of(response)
    assert audit_log.actions() == [Action.ORG_CREATED]
    org = Organization.objects.get(name="Initech")
    assert org.slug == "initech"
    assert Membership.objects.get(org=org).role == Role.OWNER
    assert Membership.objects.get(org=org).user == person


def test_only_superusers_create_organizations(org, staff_member):
    owner = staff_member((org, Role.OWNER))
    assert owner.get(f"{ORGS}add/").status_code == 403


def test_adding_a_member(org, console, audit_log):
    person = factories.make_user()

    response = console.post(f"{MEMBERS}add/", {"org": org.pk, "email": person.email, "role": "approver"})

    assert response.status_code == 302, messages_of(response)
    assert audit_log.actions() == [Action.MEMBER_ADDED]
    assert Membership.objects.get(org=org, user=person).role == Role.APPROVER

    audit_log.mark()
    again = console.post(f"{MEMBERS}add/", {"org": org.pk, "email": person.email, "role": "owner"})
    assert again.status_code == 200
    assert any("is already a member of this organization" in m for m in messages_of(again))
    nobody = console.post(f"{MEMBERS}add/", {"org": org.pk, "email": "nobody@example.com", "role": "owner"})
    assert nobody.status_code == 200
    assert "No account uses this email address." in html(nobody)
    assert audit_log.actions() == []


def test_membership_rights_are_the_services(org, staff_member, audit_log):
    admin = staff_member((org, Role.ADMIN))
    assert admin.get(f"{MEMBERS}add/").status_code == 403
    owner = staff_member((org, Role.OWNER))
    person = factories.make_user()

    response = owner.post(f"{MEMBERS}add/", {"org": org.pk, "email": person.email, "role": "auditor"})

    assert response.status_code == 302
    assert audit_log.actions() == [Action.MEMBER_ADDED]


# --- people --------------------------------------------------------------------------------------


def test_people_are_added_by_email_with_a_password(console):
    page = console.get(f"{USERS}add/")
    assert page.status_code == 200
    assert 'name="username"' not in html(page)

    response = console.post(
        f"{USERS}add/",
        {
            "email": "Ada@Example.com",
            "usable_password": "true",
            "password1": "correct-horse-battery-staple",
            "password2": "correct-horse-battery-staple",
        },
    )

    assert response.status_code == 302, html(response)[:2000]
    user = User.objects.get(email="Ada@example.com")
    assert user.check_password("correct-horse-battery-staple")
    assert console.get(f"{USERS}{user.pk}/password/").status_code == 200
    duplicate = console.post(
        f"{USERS}add/",
        {"email": "ada@example.com", "usable_password": "false", "password1": "", "password2": ""},
    )
    assert "A user with this email address already exists." in html(duplicate)


def test_people_are_deactivated_not_deleted(console):
    person = factories.make_user()
    assert console.get(f"{USERS}{person.pk}/delete/").status_code == 403
