"""createorg, createagent, rotateagentkey, suspendagent, reactivateagent (DESIGN §7)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from django.core.management.base import CommandError
from django.utils import timezone

from accounts.keys import PREFIX_SHOWN
from accounts.models import Agent, AgentKey, AgentStatus, Organization
from audit.models import Action, ActorType
from tests.cli.conftest import cli, cli_error, cli_json, cli_json_error
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db


def _close_to(value: str, expected: datetime, slack: timedelta = timedelta(minutes=1)) -> bool:
    return abs(datetime.fromisoformat(value) - expected) < slack


# --- createorg ---------------------------------------------------------------------------------------


def test_createorg_prints_its_id_and_slug_and_audits_the_operator(audit_log):
    out = cli_json("createorg", "Initech Labs")

    assert set(out) == {"org_id", "slug", "name"}
    org = Organization.objects.get(id=out["org_id"])
    assert (out["slug"], out["name"]) == (org.slug, org.name) == ("initech-labs", "Initech Labs")
    [event] = audit_log.new()
    assert (event.action, event.target_id) == (Action.ORG_CREATED, str(org.id))
    assert event.actor_type == ActorType.SYSTEM
    assert event.actor_label.startswith("manage.py (")


def test_createorg_plain_output_is_key_value_lines():
    lines = cli("createorg", "Initech").lines()
    assert lines == {"org_id": lines["org_id"], "slug": "initech", "name": "Initech"}


def test_createorg_twice_with_one_name_gets_distinct_slugs():
    first, second = cli_json("createorg", "Initech"), cli_json("createorg", "Initech")
    assert (first["slug"], second["slug"]) == ("initech", "initech-2")


def test_createorg_without_a_name_is_a_clear_error(audit_log):
    assert cli_error("createorg", "   ").startswith("A name is required.")
    assert cli_json_error("createorg", "") == {
        "error": "A name is required.",
        "hint": "Give a name of 1 to 120 characters.",
    }
    assert audit_log.actions() == []


def test_createorg_requires_the_name_argument():
    with pytest.raises(CommandError, match="the following arguments are required: name"):
        cli("createorg")


# --- createagent ------------------------------------------------------------------------------------


def test_createagent_prints_a_working_key_once_and_stores_only_its_hash(org, audit_log):
    out = cli_json(
        "createagent", "--org", str(org.id), "--name", "Billing-Agent", "--description", "Files invoices."
    )

    assert set(out) == {"agent_id", "name", "org_id", "api_key", "key_expires_at"}
    assert (out["name"], out["org_id"], out["key_expires_at"]) == ("Billing-Agent", str(org.id), None)
    agent = Agent.objects.get(id=out["agent_id"])
    assert (agent.org_id, agent.description) == (org.id, "Files invoices.")
    key = AgentKey.objects.get(agent=agent)
    assert out["api_key"].startswith("sk_agent_")
    assert key.key_hash != out["api_key"]
    assert key.prefix == out["api_key"][:PREFIX_SHOWN]

    [event] = audit_log.new()
    assert (event.action, event.target_id) == (Action.AGENT_CREATED, out["agent_id"])
    assert event.metadata == {"key_prefix": key.prefix}

    me = AgentClient(out["api_key"]).me()
    assert me.status_code == 200
    assert out["agent_id"] in me.content.decode()


def test_createagent_finds_the_org_by_slug(org):
    out = cli_json("createagent", "--org", org.slug, "--name", "Slug-Agent")
    assert out["org_id"] == str(org.id)


def test_createagent_key_expires_in_sets_the_key_lifetime(org):
    out = cli_json("createagent", "--org", org.slug, "--name", "Temp-Agent", "--key-expires-in", "90d")

    assert _close_to(out["key_expires_at"], timezone.now() + timedelta(days=90))
    key = AgentKey.objects.get(agent_id=out["agent_id"])
    assert key.expires_at is not None
    assert key.expires_at.isoformat() == out["key_expires_at"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--org", "nope", "--name", "A"], "No organization 'nope'."),
        (["--org", "{org}", "--name", "A", "--key-expires-in", "soon"], "--key-expires-in: 'soon' is not"),
        (["--org", "{org}", "--name", "  "], "A name is required."),
    ],
)
def test_createagent_bad_input_is_a_clear_error(org, audit_log, args, error):
    args = [a.format(org=org.slug) for a in args]
    assert cli_error("createagent", *args).startswith(error)
    assert cli_json_error("createagent", *args)["error"].startswith(error)
    assert not Agent.objects.exists()
    assert audit_log.actions() == []


def test_createagent_with_a_taken_name_is_a_clear_error(org, agent):
    message = cli_error("createagent", "--org", org.slug, "--name", agent.name)
    assert message.startswith(f"An agent named {agent.name!r} already exists in this organization.")


# --- rotateagentkey ---------------------------------------------------------------------------------


def test_rotateagentkey_without_grace_refuses_the_old_key_at_once(agent, api, audit_log):
    assert api.me().status_code == 200

    out = cli_json("rotateagentkey", str(agent.id))

    assert set(out) == {"agent_id", "api_key", "old_keys_valid_until"}
    assert out["agent_id"] == str(agent.id)
    ended = datetime.fromisoformat(out["old_keys_valid_until"])
    assert abs((ended - timezone.now()).total_seconds()) < 5, "the old key ended at the rotation"
    assert out["api_key"] != api.key
    [event] = audit_log.new()
    assert (event.action, event.target_id) == (Action.AGENT_KEY_ROTATED, str(agent.id))
    assert event.metadata["grace_seconds"] == 0

    refused = api.me()
    assert refused.status_code == 401
    assert refused.json()["error"] == "This API key has been rotated out."
    assert AgentClient(out["api_key"]).me().status_code == 200


def test_rotateagentkey_with_grace_keeps_the_old_key_until_the_grace_ends(agent, api, audit_log, monkeypatch):
    out = cli_json("rotateagentkey", str(agent.id), "--grace", "1h")

    now = timezone.now()
    assert _close_to(out["old_keys_valid_until"], now + timedelta(hours=1))
    assert audit_log.new()[0].metadata["grace_seconds"] == 3600
    new = AgentClient(out["api_key"])
    assert api.me().status_code == 200
    assert new.me().status_code == 200

    later = now + timedelta(hours=1, minutes=2)
    monkeypatch.setattr(timezone, "now", lambda: later)
    expired = api.me()
    assert expired.status_code == 401
    assert expired.json()["error"] == "This API key has expired."
    assert new.me().status_code == 200


def test_rotateagentkey_grace_zero_as_the_error_hint_offers_cuts_the_old_key_off_now(agent, api):
    hint = cli_json_error("rotateagentkey", str(agent.id), "--grace", "31d")["hint"]
    assert "or 0 to cut the old key off now" in hint

    out = cli_json("rotateagentkey", str(agent.id), "--grace", "0")

    ended = datetime.fromisoformat(out["old_keys_valid_until"])
    assert ended <= timezone.now()
    assert api.me().status_code == 401
    assert AgentClient(out["api_key"]).me().status_code == 200


def test_rotateagentkey_key_expires_in_limits_the_new_key(agent):
    out = cli_json("rotateagentkey", str(agent.id), "--key-expires-in", "7d")
    new_key = AgentKey.objects.get(agent=agent, revoked_at__isnull=True)
    assert new_key.prefix == out["api_key"][:PREFIX_SHOWN]
    assert new_key.expires_at is not None
    assert abs(new_key.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["not-a-uuid"], "'not-a-uuid' is not a valid agent id."),
        ([str(uuid.UUID(int=7))], f"No agent {uuid.UUID(int=7)}."),
        (["{agent}", "--grace", "31d"], "The grace period must be between 0 and 30 days."),
        (["{agent}", "--grace", "a while"], "--grace: 'a while' is not a duration"),
    ],
)
def test_rotateagentkey_bad_input_is_a_clear_error_and_the_key_keeps_working(
    agent, api, audit_log, args, error
):
    args = [a.format(agent=agent.id) for a in args]
    assert cli_error("rotateagentkey", *args).startswith(error)
    body = cli_json_error("rotateagentkey", *args)
    assert body["error"].startswith(error)
    assert body["hint"]
    assert audit_log.actions() == []
    assert api.me().status_code == 200


# --- suspendagent / reactivateagent -----------------------------------------------------------------


def test_suspended_agent_gets_403_and_reactivation_lets_it_back_in(agent, api, audit_log):
    out = cli_json("suspendagent", str(agent.id))
    assert out == {"agent_id": str(agent.id), "status": AgentStatus.SUSPENDED}
    assert audit_log.actions() == [Action.AGENT_SUSPENDED]

    audit_log.mark()
    refused = api.me()
    assert refused.status_code == 403
    assert refused.json()["error"] == "This agent has been suspended."
    assert audit_log.actions() == [Action.AUTH_REJECTED_SUSPENDED]

    audit_log.mark()
    assert cli_json("reactivateagent", str(agent.id)) == {"agent_id": str(agent.id), "status": "active"}
    assert audit_log.actions() == [Action.AGENT_REACTIVATED]
    assert api.me().status_code == 200


def test_suspending_twice_is_a_clear_error(agent, audit_log):
    cli("suspendagent", str(agent.id))
    audit_log.mark()

    assert cli_error("suspendagent", str(agent.id)) == (
        "The agent is already suspended. Reactivate it if it should work again."
    )
    assert cli_json_error("suspendagent", str(agent.id)) == {
        "error": "The agent is already suspended.",
        "hint": "Reactivate it if it should work again.",
    }
    assert audit_log.actions() == []


def test_reactivating_an_active_agent_is_a_clear_error(agent):
    assert cli_error("reactivateagent", str(agent.id)).startswith("The agent is not suspended.")


def test_suspendagent_with_an_unknown_id_is_a_clear_error(db):
    assert cli_json_error("suspendagent", "42")["error"] == "'42' is not a valid agent id."
