"""Choosing proxy mode per tool: the service rules, the console forms and the admin, all audited."""

from __future__ import annotations

import pytest

from agentkey.core.errors import ValidationFailed
from audit.models import Action
from catalog.models import AccessMode, Tool
from catalog.services import tool_update
from tests import factories
from tests.console.tools.support import console_for, page

pytestmark = pytest.mark.django_db

PUBLIC = "https://93.184.216.34"  # an address literal: no DNS needed


def test_a_proxy_tool_is_created_with_a_normalized_origin(org, audit_log):
    tool = factories.make_tool(
        org, "API", access_mode="proxy", upstream_origin=" HTTPS://93.184.216.34:443/ "
    )
    assert (tool.access_mode, tool.upstream_origin) == (AccessMode.PROXY, PUBLIC)
    assert (tool.inject_as, tool.inject_name, tool.inject_template) == (
        "header",
        "Authorization",
        "Bearer {credential}",
    )
    created = next(e for e in audit_log.new() if e.action == Action.TOOL_CREATED)
    assert created.metadata["access_mode"] == "proxy"
    assert created.metadata["upstream_origin"] == PUBLIC


@pytest.mark.parametrize(
    ("origin", "field", "words"),
    [
        ("", "upstream_origin", "needs an upstream origin"),
        ("https://93.184.216.34/v1", "upstream_origin", "nothing more"),
        ("https://93.184.216.34?x=1", "upstream_origin", "nothing more"),
        ("https://user:pw@93.184.216.34", "upstream_origin", "nothing more"),
        ("ftp://93.184.216.34", "upstream_origin", "nothing more"),
        ("https://93.184.216.34#top", "upstream_origin", "nothing more"),
        ("https://93.184.216.34:99999", "upstream_origin", "nothing more"),
        ("http://93.184.216.34", "upstream_origin", "Only https://"),
        ("https://127.0.0.1:8443", "upstream_origin", "loopback"),
        ("https://10.0.0.5", "upstream_origin", "private"),
        ("https://169.254.169.254", "upstream_origin", "metadata"),
        ("https://[::ffff:10.0.0.1]", "upstream_origin", "private"),
    ],
)
def test_bad_origins_are_refused_with_a_clear_message(org, origin, field, words):
    with pytest.raises(ValidationFailed) as refused:
        factories.make_tool(org, "API", access_mode="proxy", upstream_origin=origin)
    assert words in refused.value.error
    assert refused.value.details[0].field == field
    assert refused.value.hint


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"inject_name": "Host"}, "inject_name"),
        ({"inject_name": "Bad Header"}, "inject_name"),
        ({"inject_template": "Bearer"}, "inject_template"),
        ({"inject_template": "{credential} {credential}"}, "inject_template"),
        ({"inject_template": "Bearer {credential} {other}"}, "inject_template"),
        ({"inject_as": "query", "inject_name": "a b"}, "inject_name"),
        ({"inject_as": "cookie"}, "inject_as"),
        ({"access_mode": "tunnel"}, "access_mode"),
    ],
)
def test_bad_injection_settings_are_refused(org, fields, field):
    with pytest.raises(ValidationFailed) as refused:
        factories.make_tool(org, "API", **{"access_mode": "proxy", "upstream_origin": PUBLIC, **fields})
    assert refused.value.details[0].field == field


def test_switching_an_existing_tool_to_proxy_is_audited(tool, owner, audit_log):
    tool_update(
        tool=tool,
        actor=owner,
        access_mode="proxy",
        upstream_origin=PUBLIC,
        inject_name="X-Api-Key",
        inject_template="{credential}",
    )
    tool.refresh_from_db()
    assert (tool.access_mode, tool.upstream_origin, tool.inject_name) == ("proxy", PUBLIC, "X-Api-Key")
    (event,) = audit_log.new()
    assert event.action == Action.TOOL_UPDATED
    assert event.metadata["fields"] == ["access_mode", "inject_name", "inject_template", "upstream_origin"]
    assert (event.metadata["access_mode"], event.metadata["upstream_origin"]) == ("proxy", PUBLIC)


def test_the_database_refuses_a_proxy_tool_without_an_origin(tool):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Tool.objects.filter(pk=tool.pk).update(access_mode="proxy", upstream_origin="")
    with pytest.raises(IntegrityError), transaction.atomic():
        Tool.objects.filter(pk=tool.pk).update(upstream_origin="https://x.example/path")


# --- console --------------------------------------------------------------------------------------


def create_form(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "Billing",
        "url": "",
        "description": "",
        "auth_type": "api_key",
        "credential_mode": "shared",
        "credential": factories.new_credential("bill"),
        "credential_expires_on": "",
        "usage_guide": "",
        "config_key": "",
        "access_mode": "proxy",
        "upstream_origin": PUBLIC,
        "inject_as": "header",
        "inject_name": "Authorization",
        "inject_template": "Bearer {credential}",
    }
    data.update(overrides)
    return data


def test_the_console_creates_a_proxy_tool(admin_member):
    client = console_for(admin_member)
    assert "Upstream origin" in page(client, "/tools/new")
    response = client.post("/tools/new", create_form())
    assert response.status_code == 302
    tool = Tool.objects.get(org=admin_member.org, name="Billing")
    assert (tool.access_mode, tool.upstream_origin) == ("proxy", PUBLIC)
    shown = page(client, f"/tools/{tool.id}/")
    assert f"/proxy/{tool.id}/" in shown
    assert "never shown to the agent" in shown


def test_the_console_shows_a_refused_origin_on_the_field(admin_member):
    client = console_for(admin_member)
    response = client.post("/tools/new", create_form(upstream_origin="https://127.0.0.1"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "loopback address" in html
    assert "public https:// origin" in html
    assert not Tool.objects.filter(org=admin_member.org, name="Billing").exists()


def test_the_console_edit_switches_mode_and_validates(tool, admin_member, audit_log):
    client = console_for(admin_member)
    assert 'value="vend"' in page(client, f"/tools/{tool.id}/edit")
    base = {
        "name": tool.name,
        "url": tool.url,
        "description": tool.description,
        "auth_type": tool.auth_type,
        "credential_expires_on": "",
        "access_mode": "proxy",
        "inject_as": "query",
        "inject_name": "api_key",
        "inject_template": "",
    }
    refused = client.post(f"/tools/{tool.id}/edit", {**base, "upstream_origin": "https://10.1.2.3"})
    assert refused.status_code == 200
    assert "private address" in refused.content.decode()
    tool.refresh_from_db()
    assert tool.access_mode == "vend"
    saved = client.post(f"/tools/{tool.id}/edit", {**base, "upstream_origin": PUBLIC})
    assert saved.status_code == 302
    tool.refresh_from_db()
    assert (tool.access_mode, tool.inject_as, tool.inject_name) == ("proxy", "query", "api_key")
    assert Action.TOOL_UPDATED in audit_log.actions()


# --- admin ----------------------------------------------------------------------------------------


def admin_change_form(tool: Tool, **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": tool.name,
        "description": tool.description,
        "url": tool.url,
        "auth_type": tool.auth_type,
        "credential": "",
        "usage_guide": tool.usage_guide,
        "access_mode": "proxy",
        "upstream_origin": PUBLIC,
        "inject_as": "header",
        "inject_name": "Authorization",
        "inject_template": "Bearer {credential}",
        "guide_versions-TOTAL_FORMS": "0",
        "guide_versions-INITIAL_FORMS": "0",
    }
    data.update(overrides)
    return data


def test_the_admin_edits_proxy_mode_and_refuses_a_loopback_origin(tool, admin_client_for):
    client = admin_client_for()
    url = f"/admin/catalog/tool/{tool.id}/change/"
    assert "Upstream origin" in client.get(url).content.decode()
    refused = client.post(url, admin_change_form(tool, upstream_origin="https://127.0.0.1"), follow=True)
    assert "loopback address" in refused.content.decode()
    tool.refresh_from_db()
    assert tool.access_mode == "vend"
    saved = client.post(url, admin_change_form(tool))
    assert saved.status_code == 302, saved.content.decode()[:2000]
    tool.refresh_from_db()
    assert (tool.access_mode, tool.upstream_origin) == ("proxy", PUBLIC)
