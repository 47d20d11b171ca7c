"""Catalog as code (issue 6, item 5): export_catalog / import_catalog, never secrets."""

from __future__ import annotations

import io
import json
import socket
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import Action
from catalog.ascode import TOOL_FIELDS
from catalog.models import AccessMode, CredentialMode, Tool
from catalog.services import tool_guide_update
from tests import factories
from tests.cli.conftest import cli, cli_json

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def public_dns(monkeypatch):
    """Upstream origins are SSRF-checked when saved; DNS is outside the project, so stand in for it."""

    def fake_dns(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)


@pytest.fixture
def seeded(org) -> dict[str, str]:
    """An organization with every kind of tool; returns the credentials it was given."""
    linear_key, stripe_key = factories.new_credential("lin_api"), factories.new_credential("sk_live")
    linear = factories.make_tool(
        org,
        "Linear",
        url="https://linear.app",
        description="Issue tracker.",
        credential=linear_key,
        usage_guide="v1",
        config_key="linear",
    )
    tool_guide_update(
        tool=linear, actor=factories.OPERATOR, content="## Base URL\n\n- `https://api.linear.app`\n"
    )
    factories.make_tool(
        org, "GitHub", mode=CredentialMode.PER_AGENT, url="https://github.com", auth_type="oauth_token"
    )
    factories.make_tool(
        org,
        "Stripe",
        credential=stripe_key,
        access_mode=AccessMode.PROXY,
        upstream_origin="https://api.stripe.com",
        inject_name="X-Api-Key",
        inject_template="{credential}",
        usage_guide="Call /proxy/... only. Ünïcode ✓",
    )
    factories.make_tool(
        org,
        "Weather",
        with_credential=False,
        access_mode=AccessMode.PROXY,
        upstream_origin="https://api.weather.example",
        inject_as="query",
        inject_name="appid",
        auth_type="other",
    )
    return {"linear": linear_key, "stripe": stripe_key}


def export(org: Any, *args: str) -> str:
    return cli("export_catalog", "--org", org.slug, *args).out


def write(tmp_path, text: str, name: str = "catalog.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def tools_of(org: Any) -> dict[str, Tool]:
    return {t.config_key: t for t in Tool.objects.filter(org=org)}


def import_error(*args: str) -> CommandError:
    with pytest.raises(CommandError) as failure:
        cli("import_catalog", *args)
    assert failure.value.returncode == 2
    return failure.value


# --- export → import ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_import_of_an_export_into_an_empty_org_reproduces_every_field_and_guide(
    org, other_org, seeded, tmp_path, fmt
):
    path = write(tmp_path, export(org, "--format", fmt), f"catalog.{fmt}")

    out = cli_json("import_catalog", "--org", other_org.slug, path)

    source, copy = tools_of(org), tools_of(other_org)
    assert sorted(out["created"]) == sorted(source) == sorted(copy)
    assert (out["changed"], out["unchanged"], out["not_in_file"]) == ({}, [], [])
    for key, tool in source.items():
        for name in ("config_key", *TOOL_FIELDS, "normalized_name", "normalized_domain"):
            assert getattr(copy[key], name) == getattr(tool, name), (key, name)
        assert copy[key].secret_id is None  # secrets aside: credentials are added afterwards
        assert copy[key].guide_versions.get().content == tool.usage_guide


def test_export_to_a_file_prints_a_summary(org, seeded, tmp_path):
    out = cli_json("export_catalog", "--org", org.slug, "--output", str(tmp_path / "c.json"))

    assert out == {"output": str(tmp_path / "c.json"), "format": "json", "tools": 4}
    document = json.loads((tmp_path / "c.json").read_text())
    assert document["version"] == 1
    assert [t["config_key"] for t in document["tools"]] == ["github", "linear", "stripe", "weather"]


def test_export_contains_no_secret(org, seeded):
    for fmt in ("yaml", "json"):
        text = export(org, "--format", fmt)
        for credential in seeded.values():
            assert credential not in text
        for key in ("secret", "credential_rotated_at", "credential_expires_at", str(org.id)):
            assert key not in text
    document = yaml.safe_load(export(org))
    assert all(set(t) == {"config_key", *TOOL_FIELDS} for t in document["tools"])


def test_export_of_an_unknown_org_fails():
    with pytest.raises(CommandError, match="No organization 'nope'"):
        cli("export_catalog", "--org", "nope")


# --- dry run, apply, idempotence ---------------------------------------------------------------------


def _edited_export(org: Any) -> str:
    document = yaml.safe_load(export(org))
    tools = {t["config_key"]: t for t in document["tools"]}
    tools["linear"]["description"] = "Where the platform team plans."
    tools["linear"]["usage_guide"] += "\n## Pitfalls\n\n- Team ids are UUIDs.\n"
    tools["stripe"]["inject_name"] = "Authorization"
    tools["stripe"]["inject_template"] = "Bearer {credential}"
    del tools["weather"]
    tools["notion"] = {"config_key": "notion", "name": "Notion", "url": "https://www.notion.so"}
    document["tools"] = list(tools.values())
    return yaml.safe_dump(document)


def test_dry_run_reports_the_differences_and_changes_nothing(org, seeded, tmp_path, audit_log):
    path = write(tmp_path, _edited_export(org))
    before = {k: (t.updated_at, t.current_guide_version) for k, t in tools_of(org).items()}
    audit_log.mark()

    out = cli_json("import_catalog", "--org", org.slug, path, "--dry-run")

    assert out == {
        "dry_run": True,
        "created": ["notion"],
        "changed": {"linear": ["description", "usage_guide"], "stripe": ["inject_name", "inject_template"]},
        "unchanged": ["github"],
        "not_in_file": ["weather"],
    }
    assert audit_log.new() == []
    assert {k: (t.updated_at, t.current_guide_version) for k, t in tools_of(org).items()} == before


def test_dry_run_prints_a_readable_diff(org, seeded, tmp_path):
    lines = cli(
        "import_catalog", "--org", org.slug, write(tmp_path, _edited_export(org)), "--dry-run"
    ).lines()

    assert lines["dry_run"] == "yes: nothing was changed"
    assert lines["created"] == "notion"
    assert lines["changed"] == "linear (description, usage_guide); stripe (inject_name, inject_template)"
    assert lines["not in the file (kept)"] == "weather"


def test_import_applies_the_changes_through_audited_services_and_reimport_is_idempotent(
    org, seeded, tmp_path, audit_log
):
    path = write(tmp_path, _edited_export(org))
    audit_log.mark()

    cli_json("import_catalog", "--org", org.slug, path)

    tools = tools_of(org)
    assert tools["linear"].description == "Where the platform team plans."
    assert tools["linear"].current_guide_version == 3
    assert (tools["stripe"].inject_name, tools["stripe"].inject_template) == (
        "Authorization",
        "Bearer {credential}",
    )
    assert "weather" in tools  # never deleted by an import
    assert tools["notion"].secret_id is None
    by_target = sorted((e.action, e.target_label) for e in audit_log.new())
    assert by_target == sorted(
        [
            (Action.TOOL_UPDATED, "Linear"),
            (Action.TOOL_GUIDE_UPDATED, "Linear"),
            (Action.TOOL_UPDATED, "Stripe"),
            (Action.TOOL_CREATED, "Notion"),
        ]
    )
    audit_log.mark()

    again = cli_json("import_catalog", "--org", org.slug, path)

    assert (again["created"], again["changed"]) == ([], {})
    assert sorted(again["unchanged"]) == ["github", "linear", "notion", "stripe"]
    assert audit_log.new() == []


STRIPE_IN_ANOTHER_FORM = (
    "tools:\n- config_key: stripe\n  name: Stripe\n  access_mode: proxy\n"
    "  upstream_origin: 'HTTPS://API.Stripe.com:443/'\n  inject_name: ' X-Api-Key '\n"
    "  inject_template: ' {credential} '\n"
)


def test_proxy_fields_in_another_form_are_unchanged_as_the_update_service_sees_them(
    org, seeded, tmp_path, audit_log
):
    """Upper case, the default port, a trailing slash and spaces are only the form: the plan
    compares through the services' own cleaning (catalog.upstream), not a look-alike of it."""
    path = write(tmp_path, STRIPE_IN_ANOTHER_FORM)
    audit_log.mark()

    planned = cli_json("import_catalog", "--org", org.slug, path, "--dry-run")
    done = cli_json("import_catalog", "--org", org.slug, path)

    assert (planned["changed"], planned["unchanged"]) == ({}, ["stripe"])
    assert (done["changed"], done["unchanged"]) == ({}, ["stripe"])
    assert audit_log.new() == []
    stripe = tools_of(org)["stripe"]
    assert (stripe.upstream_origin, stripe.inject_name, stripe.inject_template) == (
        "https://api.stripe.com",
        "X-Api-Key",
        "{credential}",
    )


def test_the_dry_run_reports_an_origin_the_update_service_would_refuse(org, seeded, tmp_path):
    text = STRIPE_IN_ANOTHER_FORM.replace("HTTPS://API.Stripe.com:443/", "https://10.0.0.7")

    error = import_error("--org", org.slug, write(tmp_path, text), "--dry-run")

    assert "tools[0].upstream_origin" in str(error)
    assert "upstream origin is refused" in str(error)
    assert tools_of(org)["stripe"].upstream_origin == "https://api.stripe.com"


def test_a_partial_entry_keeps_the_fields_it_leaves_out(org, seeded, tmp_path):
    path = write(tmp_path, "tools:\n- config_key: linear\n  name: Linear\n  url: https://linear.app/\n")

    out = cli_json("import_catalog", "--org", org.slug, path)

    assert out["unchanged"] == ["linear"]
    assert tools_of(org)["linear"].description == "Issue tracker."


# --- invalid files -------------------------------------------------------------------------------------

GOOD = "- config_key: notion\n  name: Notion\n"
INVALID = {
    "bad yaml": ("tools:\n- config_key: a\n  name: [unclosed\n", "line 4"),
    "unknown auth type": (
        GOOD + "- config_key: x\n  name: X\n  auth_type: apikey\n",
        "line 4, tools[1].auth_type",
    ),
    "duplicate key": (
        GOOD + "- config_key: notion\n  name: Notion 2\n",
        "'notion' is also used at line 2, tools[0]",
    ),
    "missing name": (GOOD + "- config_key: x\n  url: https://x.example\n", "tools[1].name: is required"),
    "wrong type": (GOOD + "- config_key: x\n  name: 42\n", "tools[1].name: must be text, not int"),
    "not a slug": (GOOD + "- config_key: Not A Slug\n  name: X\n", "must be a slug"),
    "a secret": (GOOD + "- config_key: x\n  name: X\n  credential: abc\n", "never carry secrets"),
    "unknown field": (GOOD + "- config_key: x\n  name: X\n  auth-type: api_key\n", "unknown field"),
    "no tools list": ("tools: {}\n", "list under 'tools'"),
    "bad url": (GOOD + "- config_key: x\n  name: X\n  url: ftp://x\n", "tools[1].url"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_an_invalid_file_is_refused_with_where_and_what_to_do_and_nothing_is_imported(
    org, tmp_path, audit_log, case
):
    text, where = INVALID[case]
    audit_log.mark()

    error = import_error(
        "--org", org.slug, write(tmp_path, "tools:\n" + text if text.startswith("-") else text)
    )

    assert "The catalog file is invalid" in str(error)
    assert where in str(error)
    assert "nothing was imported" in str(error)
    assert not Tool.objects.filter(org=org).exists()
    assert audit_log.new() == []


def test_invalid_json_names_the_line(org, tmp_path):
    error = import_error(
        "--org", org.slug, write(tmp_path, '{"tools": [\n  {"config_key": "x",}\n]}', "c.json")
    )

    assert "line 2" in str(error)
    assert "not valid JSON" in str(error)


def test_json_errors_exit_with_code_2(org, tmp_path):
    path = write(tmp_path, "tools:\n- config_key: x\n")
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("import_catalog", "--org", org.slug, path, "--json", stdout=io.StringIO(), stderr=err)
    assert exit_info.value.code == 2
    assert "tools[0].name: is required" in json.loads(err.getvalue())["error"]


def test_a_refusal_by_a_service_rolls_back_the_whole_import(org, seeded, tmp_path, audit_log, monkeypatch):
    text = (
        "tools:\n- config_key: notion\n  name: Notion\n"
        "- config_key: internal\n  name: Internal\n  access_mode: proxy\n  upstream_origin: https://10.0.0.7\n"
    )
    audit_log.mark()

    error = import_error("--org", org.slug, write(tmp_path, text))

    assert "tools[1]" in str(error)
    assert "upstream origin is refused" in str(error)
    assert not Tool.objects.filter(org=org, config_key__in=["notion", "internal"]).exists()
    assert audit_log.new() == []


def test_changing_the_credential_mode_of_an_existing_tool_is_refused(org, seeded, tmp_path):
    text = "tools:\n- config_key: linear\n  name: Linear\n  credential_mode: per_agent\n"

    error = import_error("--org", org.slug, write(tmp_path, text), "--dry-run")

    assert "credential_mode cannot change from shared to per_agent" in str(error)


def test_a_name_taken_by_another_tool_is_refused(org, seeded, tmp_path):
    error = import_error(
        "--org", org.slug, write(tmp_path, "tools:\n- config_key: linear-2\n  name: linear\n")
    )

    assert "belongs to another tool of the organization (linear)" in str(error)
    assert not Tool.objects.filter(org=org, config_key="linear-2").exists()


def test_file_and_template_are_exclusive(org, tmp_path):
    error = import_error("--org", org.slug, write(tmp_path, GOOD), "--template", "github")

    assert "not both" in str(error)
