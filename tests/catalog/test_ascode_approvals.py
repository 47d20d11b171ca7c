"""Catalog as code carries a tool's approval rules (N-of-M, separation of duties), never 0 approvals."""

from __future__ import annotations

import pytest
import yaml

from audit.models import Action
from catalog.models import Tool
from tests import factories
from tests.catalog.test_catalog_as_code import export, import_error, tools_of, write
from tests.cli.conftest import cli_json

pytestmark = pytest.mark.django_db


def test_export_then_import_keeps_required_approvals_and_separation_of_duties(org, other_org, tmp_path):
    factories.make_tool(org, "Prod DB", config_key="prod-db", required_approvals=3, separation_of_duties=True)
    factories.make_tool(org, "Docs", config_key="docs")
    document = yaml.safe_load(export(org))
    exported = {t["config_key"]: t for t in document["tools"]}
    assert (exported["prod-db"]["required_approvals"], exported["prod-db"]["separation_of_duties"]) == (
        3,
        True,
    )
    assert (exported["docs"]["required_approvals"], exported["docs"]["separation_of_duties"]) == (1, False)

    cli_json("import_catalog", "--org", other_org.slug, write(tmp_path, export(org)))
    copy = tools_of(other_org)
    assert (copy["prod-db"].required_approvals, copy["prod-db"].separation_of_duties) == (3, True)
    assert (copy["docs"].required_approvals, copy["docs"].separation_of_duties) == (1, False)


def test_an_import_changes_the_approval_rules_through_the_audited_update(org, tmp_path, audit_log):
    tool = factories.make_tool(org, "Prod DB", config_key="prod-db")
    text = "tools:\n- config_key: prod-db\n  name: Prod DB\n  required_approvals: 2\n  separation_of_duties: true\n"
    audit_log.mark()
    out = cli_json("import_catalog", "--org", org.slug, write(tmp_path, text))
    assert out["changed"] == {"prod-db": ["required_approvals", "separation_of_duties"]}
    tool.refresh_from_db()
    assert (tool.required_approvals, tool.separation_of_duties) == (2, True)
    [event] = audit_log.new()
    assert event.action == Action.TOOL_UPDATED
    assert (event.metadata["required_approvals"], event.metadata["separation_of_duties"]) == (2, True)
    again = cli_json("import_catalog", "--org", org.slug, write(tmp_path, text))
    assert again["unchanged"] == ["prod-db"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("  required_approvals: 0", "tools[0].required_approvals: must be a whole number from 1 to 5"),
        ("  required_approvals: 6", "tools[0].required_approvals: must be a whole number from 1 to 5"),
        ('  required_approvals: "2"', "tools[0].required_approvals: must be a whole number from 1 to 5"),
        ("  separation_of_duties: maybe", "tools[0].separation_of_duties: must be true or false"),
    ],
)
def test_a_file_with_0_approvals_or_a_non_flag_is_refused_with_where(org, tmp_path, line, message):
    text = f"tools:\n- config_key: prod-db\n  name: Prod DB\n{line}\n"
    error = import_error("--org", org.slug, write(tmp_path, text))
    assert message in str(error)
    assert "line 2" in str(error)
    assert not Tool.objects.filter(org=org).exists()
