"""seed_demo, rotate_master_key, audit_export (DESIGN §7)."""

from __future__ import annotations

import csv
import io
import json
import shlex
from urllib.parse import urlparse

import pytest
from django.conf import settings as django_settings

from accounts.models import Agent, Organization, User
from audit.management.commands.audit_export import FIELDS
from audit.models import Action, AuditEvent
from catalog.models import Tool
from grants.models import AccessGrant, GrantStatus
from tests.cli.conftest import cli, cli_error, cli_json, cli_json_error
from tests.support.http import AgentClient
from vault.models import Secret
from vault.services import secret_reveal

pytestmark = pytest.mark.django_db

SEED_KEYS = {"org", "agent_id", "api_key", "tool_id", "admin_login", "try"}


def _curl(line: str) -> tuple[str, str]:
    """The key and the path of the printed curl line, as a shell would split it."""
    words = shlex.split(line)
    assert words[:3] == ["curl", "-s", "-H"]
    header, url = words[3], words[4]
    assert header.startswith("Authorization: Bearer ")
    return header.removeprefix("Authorization: Bearer "), urlparse(url).path


# --- seed_demo --------------------------------------------------------------------------------------


def test_seed_demo_prints_a_curl_line_whose_key_vends_the_demo_credential(audit_log):
    out = cli_json("seed_demo", "--base-url", "http://127.0.0.1:8000/")

    assert set(out) == SEED_KEYS
    assert out["org"] == "agentkey-demo"
    key, path = _curl(out["try"])
    assert key == out["api_key"]
    assert path == f"/api/tools/{out['tool_id']}/credentials"
    assert out["try"].endswith(f" http://127.0.0.1:8000{path}")
    assert out["admin_login"].startswith("http://127.0.0.1:8000/admin/  (admin@demo.local / ")
    assert audit_log.actions() == [
        Action.ORG_CREATED,
        Action.AGENT_CREATED,
        Action.TOOL_CREATED,
        Action.GRANT_ASSIGNED,
    ]

    vend = AgentClient(key).get(path)
    assert vend.status_code == 200
    tool = Tool.objects.select_related("secret").get(id=out["tool_id"])
    assert tool.secret is not None
    assert vend.json()["credential"] == secret_reveal(secret=tool.secret)
    assert vend.json()["credential"].startswith("demo-")
    assert User.objects.get(email="admin@demo.local").is_superuser


def test_seed_demo_twice_keeps_one_demo_and_only_the_newest_key_works(audit_log):
    first = cli_json("seed_demo")
    audit_log.mark()
    second = cli_json("seed_demo")

    assert set(second) == SEED_KEYS
    assert (second["agent_id"], second["tool_id"]) == (first["agent_id"], first["tool_id"])
    assert second["api_key"] != first["api_key"]
    assert second["admin_login"] != first["admin_login"]  # a fresh password each run
    assert audit_log.actions() == [Action.AGENT_KEY_ROTATED]
    assert Organization.objects.filter(slug="agentkey-demo").count() == 1
    assert Agent.objects.count() == Tool.objects.count() == AccessGrant.objects.count() == 1
    assert User.objects.filter(email="admin@demo.local").count() == 1

    old = AgentClient(first["api_key"]).credentials(first["tool_id"])
    assert old.status_code == 401
    assert old.json()["error"] == "This API key has been rotated out."
    key, path = _curl(second["try"])
    assert AgentClient(key).get(path).status_code == 200


def test_seed_demo_restores_a_revoked_demo_grant(audit_log):
    first = cli_json("seed_demo")
    grant = AccessGrant.objects.get()
    cli("revoke", str(grant.id))

    audit_log.mark()
    second = cli_json("seed_demo")

    assert audit_log.actions() == [Action.AGENT_KEY_ROTATED, Action.GRANT_ASSIGNED]
    assert AccessGrant.objects.get().status == GrantStatus.APPROVED
    assert AgentClient(second["api_key"]).credentials(first["tool_id"]).status_code == 200


def test_seed_demo_reactivates_a_suspended_demo_agent_so_its_new_key_works(audit_log):
    first = cli_json("seed_demo")
    cli("suspendagent", first["agent_id"])

    audit_log.mark()
    second = cli_json("seed_demo")

    assert audit_log.actions() == [Action.AGENT_REACTIVATED, Action.AGENT_KEY_ROTATED]
    key, path = _curl(second["try"])
    assert AgentClient(key).get(path).status_code == 200


def test_seed_demo_plain_output_has_the_try_line():
    lines = cli("seed_demo").lines()
    assert set(lines) == SEED_KEYS
    assert lines["try"].startswith('curl -s -H "Authorization: Bearer sk_agent_')


# --- rotate_master_key ------------------------------------------------------------------------------


def test_rotate_master_key_rewraps_under_the_active_key_and_lists_retirable_keys(
    org, api, agent, tool, credential, settings, audit_log
):
    cli("assign", "--agent", str(agent.id), "--tool", str(tool.id))
    assert set(Secret.objects.values_list("kek_id", flat=True)) == {"testA"}
    settings.AGENTKEY_MASTER_KEYS = f"{django_settings.TEST_MASTER_KEY_B},{django_settings.TEST_MASTER_KEY_A}"

    audit_log.mark()
    ran = cli("rotate_master_key", "--json", "--batch-size", "1")

    out = ran.json()
    assert set(out) == {
        "active_key",
        "rewrapped",
        "remaining_under_old_keys",
        "mfa_secrets_resealed",
        "keys_in_use",
        "retirable_keys",
    }
    assert out == {
        "active_key": "testB",
        "rewrapped": Secret.objects.count(),
        "remaining_under_old_keys": 0,
        "mfa_secrets_resealed": 0,
        "keys_in_use": ["testB"],
        "retirable_keys": ["testA"],
    }
    for entry in (django_settings.TEST_MASTER_KEY_A, django_settings.TEST_MASTER_KEY_B):
        assert entry.split(":", 1)[1] not in ran.out
    [event] = audit_log.new()
    assert event.action == Action.MASTER_KEY_ROTATED
    assert event.metadata == {
        "active_key": "testB",
        "rewrapped": out["rewrapped"],
        "remaining": 0,
        "mfa_resealed": 0,
        "complete": True,
    }

    settings.AGENTKEY_MASTER_KEYS = django_settings.TEST_MASTER_KEY_B
    assert api.credentials(tool.id).json()["credential"] == credential


def test_rotate_master_key_with_nothing_to_do_rewraps_nothing(org, tool):
    out = cli_json("rotate_master_key")
    assert (out["active_key"], out["rewrapped"], out["remaining_under_old_keys"]) == ("testA", 0, 0)
    assert (out["keys_in_use"], out["retirable_keys"]) == (["testA"], [])


def test_rotate_master_key_without_the_old_key_is_a_clear_error(org, tool, settings, audit_log):
    settings.AGENTKEY_MASTER_KEYS = django_settings.TEST_MASTER_KEY_B
    body = cli_json_error("rotate_master_key")
    assert body["error"].startswith("master key 'testA' is not loaded")
    assert body["hint"] == "Check AGENTKEY_MASTER_KEYS."
    [event] = audit_log.new()
    assert event.metadata == {"active_key": "testB", "rewrapped": 0, "complete": False}


def test_rotate_master_key_rejects_a_silly_batch_size(db):
    assert cli_error("rotate_master_key", "--batch-size", "0").startswith(
        "--batch-size must be between 1 and 10000."
    )


# --- audit_export -----------------------------------------------------------------------------------


def test_audit_export_streams_jsonl_oldest_first(org, tool):
    ran = cli("audit_export")

    rows = [json.loads(line) for line in ran.out.splitlines()]
    assert len(rows) == AuditEvent.objects.count() > 0
    assert all(set(row) == set(FIELDS) for row in rows)
    assert [row["id"] for row in rows] == sorted(row["id"] for row in rows)
    assert rows[-1]["action"] == Action.TOOL_CREATED
    assert ran.err.strip() == f"exported {len(rows)} events"


def test_audit_export_csv_has_a_header_and_one_row_per_event(org, other_org):
    ran = cli("audit_export", "--format", "csv", "--org", str(other_org.id))
    rows = list(csv.reader(io.StringIO(ran.out)))
    assert rows[0] == FIELDS
    assert [r[FIELDS.index("action")] for r in rows[1:]] == [Action.ORG_CREATED]
    assert rows[1][FIELDS.index("org_id")] == str(other_org.id)


def test_audit_export_since_a_future_date_exports_nothing(org):
    ran = cli("audit_export", "--since", "2999-01-01")
    assert (ran.out, ran.err.strip()) == ("", "exported 0 events")


@pytest.mark.parametrize("since", ["yesterday", "2026-02-30"])
def test_audit_export_with_a_bad_since_is_a_clear_error(db, since):
    assert cli_error("audit_export", "--since", since).startswith(f"--since {since!r} is not a date.")


def test_seed_demo_refuses_production_settings_unless_forced(db, settings):
    settings.AGENTKEY_PRODUCTION = True
    assert cli_error("seed_demo").startswith("seed_demo refuses to run with production settings.")
    assert not Organization.objects.filter(slug="agentkey-demo").exists()
    assert cli_json("seed_demo", "--force")["org"] == "agentkey-demo"
