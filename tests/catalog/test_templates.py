"""The built-in tool templates: each validates and imports, and the console's New tool page starts from one."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from audit.models import Action
from catalog.ascode import TOOL_FIELDS, template_library
from catalog.models import Tool
from tests.cli.conftest import cli, cli_json
from tests.console.tools.support import console_for, page

pytestmark = pytest.mark.django_db

REQUIRED = [
    "github",
    "gitlab",
    "linear",
    "jira",
    "notion",
    "slack",
    "discord",
    "stripe",
    "vercel",
    "cloudflare",
    "datadog",
    "sentry",
    "pagerduty",
    "openai",
    "anthropic",
    "aws",
    "google-cloud",
    "supabase",
    "twilio",
    "sendgrid",
]


def test_the_library_has_every_required_template_with_setup_steps_and_a_starter_guide():
    library = template_library()
    assert len(library) >= 20
    assert set(REQUIRED) <= set(library)
    for key, template in library.items():
        assert {"name", "url", "auth_type", "usage_guide"} <= set(template.values), key
        assert template.credential_setup, key
        guide = template.values["usage_guide"]
        for section in ("## Base URL", "## Authentication", "## Example request", "## Pitfalls"):
            assert section in guide, (key, section)
        assert "{{credential}}" in guide, key


def test_every_template_imports_into_an_empty_org(org, audit_log):
    out = cli_json("import_catalog", "--org", org.slug, "--template", ",".join(template_library()))

    assert sorted(out["created"]) == sorted(template_library())
    tools = {t.config_key: t for t in Tool.objects.filter(org=org)}
    for key, template in template_library().items():
        for name, value in template.values.items():
            stored = getattr(tools[key], name)
            assert stored == (value if name == "usage_guide" else value.strip()) or stored == value + "/", (
                key,
                name,
            )
        assert tools[key].secret_id is None
    assert audit_log.actions().count(Action.TOOL_CREATED) == len(tools)


def test_an_unknown_template_is_refused(org):
    with pytest.raises(CommandError, match="No built-in template 'gitbucket'") as failure:
        cli("import_catalog", "--org", org.slug, "--template", "github,gitbucket")
    assert failure.value.returncode == 2
    assert not Tool.objects.filter(org=org).exists()


# --- the console -------------------------------------------------------------------------------------


def test_new_tool_page_offers_the_templates(org, admin_member):
    html = page(console_for(admin_member), "/tools/new")

    assert "Start from a template" in html
    assert '<option value="github">GitHub</option>' in html


def test_a_template_prefills_the_new_tool_form(org, admin_member):
    response = console_for(admin_member).get("/tools/new?template=anthropic")

    assert response.status_code == 200
    form = response.context["form"]
    template = template_library()["anthropic"]
    for name in TOOL_FIELDS:
        if name in template.values:
            assert form[name].value() == template.values[name], name
    assert form["config_key"].value() == "anthropic"
    html = response.content.decode()
    assert "Getting the Anthropic credential" in html
    assert 'action="/tools/new?template=anthropic"' in html


def test_adding_a_tool_from_a_template(org, admin_member):
    template = template_library()["slack"]
    data = {
        **template.values,
        "config_key": "slack",
        "credential_mode": "shared",
        "credential": "xoxb-test-123",
    }

    response = console_for(admin_member).post("/tools/new?template=slack", data)

    assert response.status_code == 302, response.context["form"].errors
    tool = Tool.objects.get(org=org, config_key="slack")
    assert (tool.name, tool.auth_type, tool.usage_guide) == (
        "Slack",
        "bot_token",
        template.values["usage_guide"].strip(),
    )


def test_an_unknown_template_is_a_404(org, admin_member):
    assert console_for(admin_member).get("/tools/new?template=nope").status_code == 404
