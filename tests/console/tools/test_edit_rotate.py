"""Editing a tool and rotating its shared credential (write-only, never shown back)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from audit.models import Action
from catalog.models import CredentialMode, Tool
from catalog.services import tool_update
from tests import factories
from tests.console.tools.support import agent_client, console_for, page, with_access

pytestmark = pytest.mark.django_db


def edit_form(tool: Tool, **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": tool.name,
        "url": tool.url,
        "description": tool.description,
        "auth_type": tool.auth_type,
        "credential_expires_on": tool.credential_expires_at.date().isoformat()
        if tool.credential_expires_at
        else "",
    }
    data.update(overrides)
    return data


def test_edit_changes_the_description_fields(tool, admin_member, audit_log):
    day = (timezone.now() + timedelta(days=40)).date()
    client = console_for(admin_member)
    form_page = page(client, f"/tools/{tool.id}/edit")
    assert "Fixed once a tool is created" in form_page
    response = client.post(
        f"/tools/{tool.id}/edit",
        edit_form(
            tool,
            name="Linear (prod)",
            url="https://linear.app/acme",
            description="Where bugs live.",
            auth_type="bot_token",
            credential_expires_on=day.isoformat(),
        ),
    )
    assert (response.status_code, response["Location"]) == (302, f"/tools/{tool.id}/")
    tool.refresh_from_db()
    assert (tool.name, tool.url, tool.description, tool.auth_type) == (
        "Linear (prod)",
        "https://linear.app/acme",
        "Where bugs live.",
        "bot_token",
    )
    assert tool.credential_expires_at == datetime(day.year, day.month, day.day, tzinfo=UTC)
    assert audit_log.actions() == [Action.TOOL_UPDATED]
    assert audit_log.new()[0].metadata["fields"] == [
        "auth_type",
        "credential_expires_at",
        "description",
        "name",
        "url",
    ]


def test_saving_an_unchanged_form_changes_nothing_and_keeps_the_exact_expiry(
    tool, owner, operator, audit_log
):
    exact = timezone.now().replace(microsecond=0) + timedelta(days=30, hours=5, minutes=7)
    tool_update(tool=tool, actor=operator, credential_expires_at=exact)
    tool.refresh_from_db()
    audit_log.mark()
    response = console_for(owner).post(f"/tools/{tool.id}/edit", edit_form(tool))
    assert response.status_code == 302
    tool.refresh_from_db()
    assert tool.credential_expires_at == exact
    assert audit_log.actions() == []


def test_emptying_the_expiry_clears_it(org, owner, audit_log):
    tool = factories.make_tool(org, "Slack", credential_expires_at=timezone.now() + timedelta(days=3))
    audit_log.mark()
    console_for(owner).post(f"/tools/{tool.id}/edit", edit_form(tool, credential_expires_on=""))
    tool.refresh_from_db()
    assert tool.credential_expires_at is None
    assert audit_log.actions() == [Action.TOOL_UPDATED]


def test_the_credential_mode_cannot_be_changed_by_editing(tool, owner):
    console_for(owner).post(f"/tools/{tool.id}/edit", edit_form(tool, credential_mode="per_agent"))
    tool.refresh_from_db()
    assert tool.credential_mode == CredentialMode.SHARED


def test_a_refused_edit_is_explained_and_changes_nothing(org, tool, owner, audit_log):
    factories.make_tool(org, "Jira")
    audit_log.mark()
    client = console_for(owner)
    response = client.post(f"/tools/{tool.id}/edit", edit_form(tool, name="JIRA"))
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    bad_url = client.post(f"/tools/{tool.id}/edit", edit_form(tool, url="ftp://linear.app"))
    assert "Enter a valid HTTP or HTTPS URL." in bad_url.content.decode()
    tool.refresh_from_db()
    assert (tool.name, tool.url) == ("Linear", "https://linear.app/")
    assert audit_log.actions() == []


def test_rotate_replaces_the_credential_for_the_very_next_vend(
    org, tool, credential, admin_member, audit_log
):
    agent, api = agent_client(org, "Onboarding-Agent")
    with_access(agent, tool)
    assert api.credentials(tool.id).json()["credential"] == credential
    client = console_for(admin_member)
    before = page(client, f"/tools/{tool.id}/rotate")
    assert '<span class="pill ok">set</span>' in before
    assert 'type="password"' in before
    assert credential not in before

    audit_log.mark()
    fresh = factories.new_credential("lin_api")
    response = client.post(f"/tools/{tool.id}/rotate", {"credential": fresh, "credential_expires_on": ""})
    assert (response.status_code, response["Location"]) == (302, f"/tools/{tool.id}/")
    assert audit_log.actions() == [Action.TOOL_CREDENTIAL_ROTATED]
    assert api.credentials(tool.id).json()["credential"] == fresh

    for url in (
        f"/tools/{tool.id}/",
        f"/tools/{tool.id}/rotate",
        f"/tools/{tool.id}/edit",
        f"/tools/{tool.id}/guide",
        "/tools/",
    ):
        html = page(client, url)
        assert fresh not in html, url
        assert credential not in html, url


def test_rotating_records_the_time_and_a_new_expiry(tool, owner, time_machine):
    later = timezone.now() + timedelta(days=100)
    time_machine.move_to(later)
    client = console_for(owner)
    assert "not rotated in 90 days" in page(client, f"/tools/{tool.id}/")
    day = (later + timedelta(days=365)).date()
    client.post(
        f"/tools/{tool.id}/rotate",
        {"credential": factories.new_credential(), "credential_expires_on": day.isoformat()},
    )
    tool.refresh_from_db()
    assert tool.credential_rotated_at >= later
    assert tool.credential_expires_at == datetime(day.year, day.month, day.day, tzinfo=UTC)
    html = page(client, f"/tools/{tool.id}/")
    assert "not rotated in 90 days" not in html
    assert day.isoformat() in html


def test_the_first_credential_of_a_tool_is_added_on_the_same_page(org, owner, audit_log):
    tool = factories.make_tool(org, "Notion", with_credential=False)
    audit_log.mark()
    client = console_for(owner)
    assert "Add the credential of Notion" in page(client, f"/tools/{tool.id}/rotate")
    response = client.post(f"/tools/{tool.id}/rotate", {"credential": factories.new_credential("ntn")})
    assert "Credential of Notion added." in client.get(response["Location"]).content.decode()
    assert audit_log.actions() == [Action.TOOL_CREDENTIAL_ROTATED]
    assert audit_log.new()[0].metadata == {"first": True}


def test_an_empty_credential_is_refused(tool, owner, audit_log):
    response = console_for(owner).post(f"/tools/{tool.id}/rotate", {"credential": "   "})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert audit_log.actions() == []


def test_a_per_agent_tool_has_no_credential_to_rotate(per_agent_tool, owner, audit_log):
    client = console_for(owner)
    assert client.get(f"/tools/{per_agent_tool.id}/rotate").status_code == 404
    assert (
        client.post(
            f"/tools/{per_agent_tool.id}/rotate", {"credential": factories.new_credential()}
        ).status_code
        == 404
    )
    assert audit_log.actions() == []
