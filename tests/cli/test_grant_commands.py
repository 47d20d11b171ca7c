"""approve, deny, revoke, assign (DESIGN §7): the same services the inbox uses."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from django.core.management.base import CommandError
from django.utils import timezone

from audit.models import Action
from grants.models import AccessGrant, GrantStatus
from tests.cli.conftest import cli, cli_error, cli_json, cli_json_error
from tests.factories import make_tool, new_credential
from tests.support.http import access_of

pytestmark = pytest.mark.django_db


def _pending(api, tool) -> str:
    response = api.request_access(tool.id)
    assert response.status_code == 201
    return str(response.json()["request_id"])


# --- approve ----------------------------------------------------------------------------------------


def test_approve_with_expires_in_opens_the_vend_until_then(api, agent, tool, credential, audit_log):
    grant_id = _pending(api, tool)
    assert api.credentials(tool.id).status_code == 403

    audit_log.mark()
    out = cli_json("approve", grant_id, "--expires-in", "8h")

    assert set(out) == {"grant_id", "status", "agent", "tool", "expires_at"}
    assert (out["grant_id"], out["status"], out["agent"], out["tool"]) == (
        grant_id,
        GrantStatus.APPROVED,
        agent.name,
        tool.name,
    )
    expires_at = datetime.fromisoformat(out["expires_at"])
    assert abs(expires_at - (timezone.now() + timedelta(hours=8))) < timedelta(minutes=1)
    [event] = audit_log.new()
    assert (event.action, event.target_id) == (Action.GRANT_APPROVED, grant_id)
    assert event.actor_label.startswith("manage.py (")
    assert event.metadata["expires_at"] == out["expires_at"]

    vend = api.credentials(tool.id)
    assert vend.status_code == 200
    assert vend.json()["credential"] == credential
    assert datetime.fromisoformat(vend.json()["expires_at"].replace("Z", "+00:00")) == expires_at


def test_approve_without_expires_in_has_no_expiry(api, tool):
    grant_id = _pending(api, tool)
    assert cli("approve", grant_id).lines()["expires_at"] == "None"
    assert AccessGrant.objects.get(id=grant_id).expires_at is None


def test_approve_per_agent_tool_reads_this_agents_credential_from_stdin(api, per_agent_tool, audit_log):
    grant_id = _pending(api, per_agent_tool)
    secret = new_credential("ghp")

    audit_log.mark()
    ran = cli("approve", grant_id, "--credential-stdin", "--json", stdin=secret + "\n")

    assert ran.json()["status"] == GrantStatus.APPROVED
    assert secret not in ran.out
    assert secret not in ran.err
    assert audit_log.actions() == [Action.GRANT_APPROVED]
    assert secret not in str(audit_log.new()[0].metadata)
    assert api.credentials(per_agent_tool.id).json()["credential"] == secret


def test_approve_per_agent_tool_without_a_credential_is_a_clear_error(api, per_agent_tool, audit_log):
    grant_id = _pending(api, per_agent_tool)
    audit_log.mark()
    assert cli_json_error("approve", grant_id) == {
        "error": "This tool uses a credential per agent.",
        "hint": "Provide the credential for this agent when you approve.",
    }
    assert cli_json_error("approve", grant_id, "--credential-stdin", stdin="\n")["error"] == (
        "No credential on stdin."
    )
    assert AccessGrant.objects.get(id=grant_id).status == GrantStatus.PENDING
    assert audit_log.actions() == []


def test_approve_shared_tool_refuses_a_credential_without_repeating_it(api, tool):
    grant_id = _pending(api, tool)
    secret = new_credential()
    message = cli_error("approve", grant_id, "--credential-stdin", stdin=secret)
    assert message.startswith("This tool uses one shared credential.")
    assert secret not in message
    assert AccessGrant.objects.get(id=grant_id).status == GrantStatus.PENDING


def test_approving_twice_is_a_clear_not_pending_error(api, tool, audit_log):
    grant_id = _pending(api, tool)
    cli("approve", grant_id)
    audit_log.mark()

    assert cli_error("approve", grant_id) == (
        "This request is approved, not pending. "
        "Refresh: someone else already decided it. Only pending requests can be approved or denied."
    )
    assert cli_json_error("approve", grant_id)["error"] == "This request is approved, not pending."
    assert audit_log.actions() == []


@pytest.mark.parametrize(
    ("duration", "error", "hint"),
    [
        ("forever", "--expires-in: 'forever' is not a duration", "Use forms like 30m, 8h, 7d."),
        ("8 hours", "--expires-in: '8 hours' is not a duration", "Use forms like 30m, 8h, 7d."),
        ("90d", "The expiry must be between 1 hour and 30 days from now.", "Choose a duration such as"),
        ("10m", "The expiry must be between 1 hour and 30 days from now.", "Choose a duration such as"),
    ],
)
def test_approve_with_a_bad_duration_is_a_clear_error(api, tool, audit_log, duration, error, hint):
    grant_id = _pending(api, tool)
    audit_log.mark()
    body = cli_json_error("approve", grant_id, "--expires-in", duration)
    assert body["error"].startswith(error)
    assert body["hint"].startswith(hint)
    assert cli_error("approve", grant_id, "--expires-in", duration).startswith(error)
    assert AccessGrant.objects.get(id=grant_id).status == GrantStatus.PENDING
    assert audit_log.actions() == []


@pytest.mark.parametrize("command", ["approve", "revoke"])
def test_grant_commands_with_an_unknown_or_malformed_id_are_clear_errors(db, command):
    missing = uuid.UUID(int=5)
    assert cli_error(command, str(missing)).startswith(f"No access grant {missing}.")
    assert cli_json_error(command, "grant-1") == {
        "error": "'grant-1' is not a valid grant id.",
        "hint": "Pass the grant's UUID.",
    }


# --- deny -------------------------------------------------------------------------------------------


def test_deny_requires_a_reason(api, tool):
    grant_id = _pending(api, tool)
    with pytest.raises(CommandError, match="the following arguments are required: --reason"):
        cli("deny", grant_id)
    assert AccessGrant.objects.get(id=grant_id).status == GrantStatus.PENDING


def test_denied_agent_sees_the_reason_in_its_tool_list(api, tool, audit_log):
    grant_id = _pending(api, tool)
    reason = "Use the read-only Linear integration instead."

    audit_log.mark()
    out = cli_json("deny", grant_id, "--reason", reason)

    assert out == {"grant_id": grant_id, "status": GrantStatus.DENIED, "reason": reason}
    [event] = audit_log.new()
    assert (event.action, event.target_id, event.metadata["reason"]) == (
        Action.GRANT_DENIED,
        grant_id,
        reason,
    )
    [listed] = [t for t in api.tools().json()["tools"] if t["id"] == str(tool.id)]
    assert (listed["your_access"], listed["denial_reason"]) == ("denied", reason)
    assert "denial_reason" in api.credentials(tool.id).json()["hint"]


def test_deny_with_a_too_short_reason_is_a_clear_error(api, tool):
    grant_id = _pending(api, tool)
    assert cli_json_error("deny", grant_id, "--reason", "no")["error"] == "A denial needs a reason."
    assert AccessGrant.objects.get(id=grant_id).status == GrantStatus.PENDING


def test_deny_after_approval_is_a_clear_not_pending_error(api, tool):
    grant_id = _pending(api, tool)
    cli("approve", grant_id)
    assert cli_error("deny", grant_id, "--reason", "Changed my mind.").startswith(
        "This request is approved, not pending."
    )


# --- revoke -----------------------------------------------------------------------------------------


def test_revoked_grant_gets_403_on_next_fetch(api, tool, audit_log):
    grant_id = _pending(api, tool)
    cli("approve", grant_id)
    assert api.credentials(tool.id).status_code == 200

    audit_log.mark()
    out = cli_json("revoke", grant_id, "--reason", "Project ended.")

    assert out == {"grant_id": grant_id, "status": GrantStatus.REVOKED}
    [event] = audit_log.new()
    assert (event.action, event.metadata["reason"]) == (Action.GRANT_REVOKED, "Project ended.")
    refused = api.credentials(tool.id)
    assert refused.status_code == 403
    assert refused.json()["hint"].startswith("Your access was revoked.")
    assert access_of(api.tools(), tool.id) == "revoked"


def test_revoking_what_is_not_approved_is_a_clear_error(api, tool, audit_log):
    grant_id = _pending(api, tool)
    audit_log.mark()
    assert cli_json_error("revoke", grant_id) == {
        "error": "This grant is pending, not approved.",
        "hint": "Only approved access can be revoked.",
    }
    assert audit_log.actions() == []


# --- assign -----------------------------------------------------------------------------------------


def test_assign_gives_access_without_a_request(api, agent, tool, credential, audit_log):
    out = cli_json("assign", "--agent", str(agent.id), "--tool", str(tool.id), "--expires-in", "7d")

    assert set(out) == {"grant_id", "status"}
    assert out["status"] == GrantStatus.APPROVED
    [event] = audit_log.new()
    assert (event.action, event.target_id, event.metadata["from"]) == (
        Action.GRANT_ASSIGNED,
        out["grant_id"],
        "none",
    )
    grant = AccessGrant.objects.get(id=out["grant_id"])
    assert grant.expires_at is not None
    assert abs(grant.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)
    assert api.credentials(tool.id).json()["credential"] == credential


def test_assign_per_agent_tool_reads_the_credential_from_stdin(api, agent, per_agent_tool):
    secret = new_credential("ghp")
    ran = cli("assign", "--agent", str(agent.id), "--tool", str(per_agent_tool.id), "--json", stdin=secret)
    assert ran.json()["status"] == GrantStatus.APPROVED
    assert secret not in ran.out
    assert api.credentials(per_agent_tool.id).json()["credential"] == secret


def test_assign_per_agent_tool_without_stdin_is_a_clear_error(agent, per_agent_tool):
    message = cli_error("assign", "--agent", str(agent.id), "--tool", str(per_agent_tool.id))
    assert message.startswith("No credential on stdin.")
    assert not AccessGrant.objects.exists()


def test_assign_refuses_a_tool_of_another_organization(agent, other_org):
    foreign = make_tool(other_org, "Globex Wiki")
    body = cli_json_error("assign", "--agent", str(agent.id), "--tool", str(foreign.id))
    assert body["error"] == "No such tool in the agent's organization."
    assert not AccessGrant.objects.exists()


def test_assigning_twice_is_a_clear_error(agent, tool, audit_log):
    cli("assign", "--agent", str(agent.id), "--tool", str(tool.id))
    audit_log.mark()
    assert cli_error("assign", "--agent", str(agent.id), "--tool", str(tool.id)) == (
        "The agent already has approved access to this tool. Nothing to do."
    )
    assert audit_log.actions() == []


def test_assign_reopens_a_denied_request(api, agent, tool):
    grant_id = _pending(api, tool)
    cli("deny", grant_id, "--reason", "Not this quarter.")
    out = cli_json("assign", "--agent", str(agent.id), "--tool", str(tool.id))
    assert out["grant_id"] == grant_id
    assert api.credentials(tool.id).status_code == 200
