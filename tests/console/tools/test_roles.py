"""Who may do what on the tools pages: approvers and auditors read, another organization sees nothing."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import Role
from catalog.models import GuideSuggestion, GuideVersion, Tool, ToolSuggestion
from catalog.services import tool_guide_update
from tests import factories
from tests.console.tools.support import agent_client, console_for, with_access

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(org, tool, operator):
    """A tool with two guide versions, a pending guide suggestion and a pending tool suggestion."""
    tool_guide_update(tool=tool, actor=operator, content="Version two.")
    agent, api = agent_client(org, "Onboarding-Agent")
    with_access(agent, tool)
    api.suggest_instructions(tool.id, "Always set the team.")
    api.suggest("Notion", "Specs live there.")
    return {
        "tool": tool,
        "guide_suggestion": GuideSuggestion.objects.get(tool=tool),
        "tool_suggestion": ToolSuggestion.objects.get(org=org),
    }


def writes(world) -> list[tuple[str, str, dict[str, str]]]:
    t, g, s = world["tool"].id, world["guide_suggestion"].id, world["tool_suggestion"].id
    credential = factories.new_credential("leak")
    return [
        ("get", "/tools/new", {}),
        (
            "post",
            "/tools/new",
            {"name": "Evil", "auth_type": "api_key", "credential_mode": "shared", "credential": credential},
        ),
        ("get", f"/tools/new?suggestion={s}", {}),
        (
            "post",
            f"/tools/new?suggestion={s}",
            {"name": "Notion", "auth_type": "api_key", "credential_mode": "shared", "credential_later": "on"},
        ),
        ("get", f"/tools/{t}/edit", {}),
        ("post", f"/tools/{t}/edit", {"name": "Renamed", "url": "", "description": "", "auth_type": "other"}),
        ("get", f"/tools/{t}/rotate", {}),
        ("post", f"/tools/{t}/rotate", {"credential": credential}),
        ("post", f"/tools/{t}/guide/update", {"content": "Hijacked."}),
        ("post", f"/tools/{t}/guide/versions/1/restore", {}),
        ("post", f"/tools/{t}/guide/suggestions/{g}/accept", {"content": "Hijacked."}),
        ("post", f"/tools/{t}/guide/suggestions/{g}/dismiss", {"reason": "no"}),
    ]


def snapshot(world) -> tuple[object, ...]:
    tool = Tool.objects.get(pk=world["tool"].pk)
    return (
        Tool.objects.count(),
        (tool.name, tool.url, tool.auth_type, tool.secret_id, tool.credential_rotated_at, tool.usage_guide),
        GuideVersion.objects.count(),
        GuideSuggestion.objects.get(pk=world["guide_suggestion"].pk).status,
        ToolSuggestion.objects.get(pk=world["tool_suggestion"].pk).status,
    )


@pytest.mark.parametrize("role", [Role.APPROVER, Role.AUDITOR])
def test_approvers_and_auditors_get_403_on_every_write_and_nothing_changes(org, world, role, audit_log):
    client = console_for(factories.make_member(org, role))
    before = snapshot(world)
    audit_log.mark()
    for method, url, data in writes(world):
        response = getattr(client, method)(url, data)
        assert response.status_code == 403, (role, method, url, response.status_code)
    assert snapshot(world) == before
    assert audit_log.actions() == []


@pytest.mark.parametrize("role", [Role.APPROVER, Role.AUDITOR, Role.ADMIN, Role.OWNER])
def test_every_member_reads_the_tools_pages(org, world, role):
    client = console_for(factories.make_member(org, role))
    t = world["tool"].id
    for url in ("/tools/", f"/tools/{t}/", f"/tools/{t}/guide", f"/tools/{t}/guide/versions/1"):
        assert client.get(url).status_code == 200, (role, url)


def test_another_organizations_owner_finds_none_of_these_tools(world, other_org, audit_log):
    client = console_for(factories.make_member(other_org, Role.OWNER))
    t = world["tool"].id
    before = snapshot(world)
    audit_log.mark()
    reads = [f"/tools/{t}/", f"/tools/{t}/guide", f"/tools/{t}/guide/versions/1"]
    for url in reads:
        assert client.get(url).status_code == 404, url
    for method, url, data in writes(world):
        if url in ("/tools/new",):
            continue  # creating in their own organization is theirs to do
        response = getattr(client, method)(url, data)
        assert response.status_code == 404, (method, url, response.status_code)
    assert snapshot(world) == before
    assert audit_log.actions() == []


def test_anonymous_visitors_are_sent_to_sign_in(world):
    client = Client()
    t = world["tool"].id
    for url in ("/tools/", f"/tools/{t}/", f"/tools/{t}/guide", f"/tools/{t}/edit", "/tools/new"):
        response = client.get(url)
        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]


def test_write_endpoints_refuse_get(world, owner):
    client = console_for(owner)
    t, g = world["tool"].id, world["guide_suggestion"].id
    for url in (
        f"/tools/{t}/guide/update",
        f"/tools/{t}/guide/versions/1/restore",
        f"/tools/{t}/guide/suggestions/{g}/accept",
        f"/tools/{t}/guide/suggestions/{g}/dismiss",
    ):
        assert client.get(url).status_code == 405, url
