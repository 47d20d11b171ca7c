"""createtool, rotatetoolcredential, dismisssuggestion (DESIGN §7): credentials only ever on stdin."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from django.core.management.base import CommandError
from django.utils import timezone

from audit.models import Action
from catalog.models import CredentialMode, SuggestionStatus, Tool, ToolSuggestion
from grants.models import AccessGrant, GrantStatus
from tests.cli.conftest import cli, cli_error, cli_json, cli_json_error
from tests.factories import make_agent, new_credential
from tests.support.http import AgentClient, access_of
from vault.services import secret_reveal

pytestmark = pytest.mark.django_db


def _assign(agent, tool_id: str) -> None:
    cli("assign", "--agent", str(agent.id), "--tool", tool_id)


# --- createtool -------------------------------------------------------------------------------------


def test_createtool_reads_the_shared_credential_from_stdin_and_never_prints_it(org, agent, api, audit_log):
    secret = new_credential("lin_api")

    out = cli_json(
        "createtool",
        "--org",
        org.slug,
        "--name",
        "Linear",
        "--url",
        "https://linear.app",
        "--auth-type",
        "api_key",
        "--instructions",
        "Team key: PLATFORM.",
        stdin=secret + "\n",
    )

    assert set(out) == {"tool_id", "name", "config_key", "accepted_suggestions", "pending_requests_opened"}
    assert (out["name"], out["config_key"]) == ("Linear", "linear")
    assert (out["accepted_suggestions"], out["pending_requests_opened"]) == ([], 0)
    tool = Tool.objects.select_related("secret").get(id=out["tool_id"])
    assert (tool.org_id, tool.url, tool.credential_mode) == (org.id, "https://linear.app/", "shared")
    assert tool.secret is not None
    assert secret_reveal(secret=tool.secret) == secret  # the trailing newline is not part of it
    [event] = audit_log.new()
    assert (event.action, event.target_id) == (Action.TOOL_CREATED, str(tool.id))
    assert event.metadata["has_credential"] is True
    assert secret not in str(event.metadata)

    _assign(agent, out["tool_id"])
    vend = api.credentials(tool.id)
    assert vend.json()["credential"] == secret
    assert vend.json()["instructions"] == "Team key: PLATFORM."


def test_createtool_plain_output_does_not_echo_the_credential(org):
    secret = new_credential()
    ran = cli("createtool", "--org", org.slug, "--name", "Sentry", stdin=secret)
    assert ran.lines()["name"] == "Sentry"
    assert secret not in ran.out
    assert secret not in ran.err


def test_createtool_keeps_a_credential_with_inner_whitespace_and_drops_one_crlf(org):
    secret = "user:pa ss word\twith tabs"
    out = cli_json("createtool", "--org", org.slug, "--name", "Basic", stdin=secret + "\r\n")
    tool = Tool.objects.select_related("secret").get(id=out["tool_id"])
    assert tool.secret is not None
    assert secret_reveal(secret=tool.secret) == secret


def test_createtool_no_credential_adds_a_shared_tool_to_fill_in_later(org, agent, api, audit_log):
    out = cli_json("createtool", "--org", org.slug, "--name", "Notion", "--no-credential")

    tool = Tool.objects.get(id=out["tool_id"])
    assert (tool.credential_mode, tool.secret_id) == (CredentialMode.SHARED, None)
    assert audit_log.new()[0].metadata["has_credential"] is False
    _assign(agent, out["tool_id"])
    assert api.credentials(tool.id).json()["error"] == "Credential is not configured."


def test_createtool_per_agent_needs_no_stdin(org, audit_log):
    out = cli_json(
        "createtool",
        "--org",
        org.slug,
        "--name",
        "GitHub",
        "--mode",
        "per_agent",
        "--auth-type",
        "oauth_token",
    )

    tool = Tool.objects.get(id=out["tool_id"])
    assert (tool.credential_mode, tool.auth_type, tool.secret_id) == ("per_agent", "oauth_token", None)
    assert audit_log.actions() == [Action.TOOL_CREATED]


def test_createtool_opens_pending_requests_for_the_backers_of_a_matching_suggestion(org, audit_log):
    first = AgentClient(make_agent(org, "Onboarding-Agent").key.plaintext)
    second = AgentClient(make_agent(org, "Billing-Agent").key.plaintext)
    suggestion_id = first.suggest("Linear", url="https://linear.app/docs").json()["suggestion_id"]
    assert second.suggest("linear app", url="https://www.linear.app").status_code == 201

    audit_log.mark()
    out = cli_json(
        "createtool", "--org", org.slug, "--name", "Linear", "--url", "https://linear.app", stdin="lin_x" * 4
    )

    assert out["accepted_suggestions"] == [suggestion_id]
    assert out["pending_requests_opened"] == 2
    assert audit_log.actions() == [
        Action.TOOL_CREATED,
        Action.TOOL_SUGGESTION_ACCEPTED,
        Action.GRANT_REQUESTED,
        Action.GRANT_REQUESTED,
    ]
    assert ToolSuggestion.objects.get(id=suggestion_id).status == SuggestionStatus.ACCEPTED
    assert access_of(first.tools(), out["tool_id"]) == "pending"
    assert access_of(second.tools(), out["tool_id"]) == "pending"
    assert AccessGrant.objects.filter(tool_id=out["tool_id"], status=GrantStatus.PENDING).count() == 2


@pytest.mark.parametrize("stdin", ["", "\n", "   \n"])
def test_createtool_with_nothing_on_stdin_is_a_clear_error(org, audit_log, stdin):
    message = cli_error("createtool", "--org", org.slug, "--name", "Linear", stdin=stdin)
    assert message.startswith("No credential on stdin. Pipe it in, for example: printf %s")
    assert "manage.py createtool" in message
    body = cli_json_error("createtool", "--org", org.slug, "--name", "Linear", stdin=stdin)
    assert body["error"] == "No credential on stdin."
    assert not Tool.objects.exists()
    assert audit_log.actions() == []


def test_createtool_with_a_taken_name_is_a_clear_error_and_keeps_the_secret_out(org, tool, audit_log):
    secret = new_credential()
    message = cli_error("createtool", "--org", org.slug, "--name", "linear", stdin=secret)
    assert message == (
        "A tool named 'linear' already exists in this organization. "
        "Edit the existing tool, or choose a different name."
    )
    assert secret not in message
    assert Tool.objects.filter(org=org).count() == 1
    assert audit_log.actions() == []


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--org", "nope", "--name", "X"], "No organization 'nope'."),
        (["--org", "{org}", "--name", "X", "--url", "ftp://x"], "Enter a valid HTTP or HTTPS URL."),
        (["--org", "{org}", "--name", "!!!"], "A tool needs a name."),
    ],
)
def test_createtool_bad_input_is_a_clear_error(org, args, error):
    args = [a.format(org=org.slug) for a in args]
    assert cli_json_error("createtool", *args, stdin="cred_value_1234")["error"] == error
    assert not Tool.objects.exists()


@pytest.mark.parametrize("option", ["--mode", "--auth-type"])
def test_createtool_rejects_an_unknown_choice(org, option):
    with pytest.raises(CommandError, match="invalid choice: 'bogus'"):
        cli("createtool", "--org", org.slug, "--name", "X", option, "bogus", stdin="cred")


def test_createtool_has_no_argument_that_takes_a_credential(org):
    with pytest.raises(CommandError, match="unrecognized arguments"):
        cli("createtool", "--org", org.slug, "--name", "X", "--credential", "s3cr3t-value")


# --- rotatetoolcredential ---------------------------------------------------------------------------


def test_rotatetoolcredential_next_vend_returns_the_new_value(agent, api, tool, credential, audit_log):
    _assign(agent, str(tool.id))
    assert api.credentials(tool.id).json()["credential"] == credential
    new_value = new_credential("lin_api_rotated")

    audit_log.mark()
    ran = cli("rotatetoolcredential", str(tool.id), "--json", stdin=new_value + "\n")

    out = ran.json()
    assert set(out) == {"tool_id", "credential_rotated_at"}
    assert out["tool_id"] == str(tool.id)
    assert abs(datetime.fromisoformat(out["credential_rotated_at"]) - timezone.now()) < timedelta(minutes=1)
    assert new_value not in ran.out
    assert credential not in ran.out
    [event] = audit_log.new()
    assert (event.action, event.target_id, event.metadata) == (
        Action.TOOL_CREDENTIAL_ROTATED,
        str(tool.id),
        {"first": False},
    )
    assert api.credentials(tool.id).json()["credential"] == new_value


def test_rotatetoolcredential_gives_a_credential_to_a_tool_created_without_one(org, agent, api, audit_log):
    tool_id = cli_json("createtool", "--org", org.slug, "--name", "Notion", "--no-credential")["tool_id"]
    _assign(agent, tool_id)
    value = new_credential("notion")
    audit_log.mark()
    cli("rotatetoolcredential", tool_id, stdin=value)
    assert audit_log.new()[0].metadata == {"first": True}
    assert api.credentials(tool_id).json()["credential"] == value


def test_rotatetoolcredential_refuses_a_per_agent_tool(per_agent_tool, audit_log):
    secret = new_credential()
    message = cli_error("rotatetoolcredential", str(per_agent_tool.id), stdin=secret)
    assert message.startswith("Only shared tools have a tool-level credential.")
    assert secret not in message
    assert audit_log.actions() == []


def test_rotatetoolcredential_with_empty_stdin_keeps_the_old_credential(agent, api, tool, credential):
    _assign(agent, str(tool.id))
    assert (
        cli_json_error("rotatetoolcredential", str(tool.id), stdin="")["error"] == "No credential on stdin."
    )
    assert api.credentials(tool.id).json()["credential"] == credential


def test_rotatetoolcredential_with_an_unknown_tool_is_a_clear_error(db):
    missing = uuid.UUID(int=9)
    assert cli_error("rotatetoolcredential", str(missing), stdin="x" * 12).startswith(f"No tool {missing}.")
    assert cli_json_error("rotatetoolcredential", "linear")["error"] == "'linear' is not a valid tool id."


# --- dismisssuggestion ------------------------------------------------------------------------------


def test_dismissed_suggestion_is_refused_with_retry_after_when_suggested_again(api, audit_log):
    suggestion_id = api.suggest("Figma", url="https://figma.com").json()["suggestion_id"]

    audit_log.mark()
    out = cli_json("dismisssuggestion", suggestion_id, "--reason", "We use Penpot instead.")

    assert set(out) == {"suggestion_id", "status", "dismissed_until"}
    assert (out["suggestion_id"], out["status"]) == (suggestion_id, SuggestionStatus.DISMISSED)
    until = datetime.fromisoformat(out["dismissed_until"])
    assert abs(until - (timezone.now() + timedelta(hours=24))) < timedelta(minutes=1)
    [event] = audit_log.new()
    assert (event.action, event.target_id) == (Action.TOOL_SUGGESTION_DISMISSED, suggestion_id)
    assert event.metadata == {"reason": "We use Penpot instead."}
    assert ToolSuggestion.objects.get(id=suggestion_id).dismissal_reason == "We use Penpot instead."

    again = api.suggest("Figma", url="https://www.figma.com/files")
    assert again.status_code == 409
    assert again.json()["suggestion_id"] == suggestion_id
    assert again.json()["retry_after"] == until.isoformat().replace("+00:00", "Z")


def test_dismissing_twice_is_a_clear_error(api, audit_log):
    suggestion_id = api.suggest("Figma").json()["suggestion_id"]
    cli("dismisssuggestion", suggestion_id)
    audit_log.mark()
    assert cli_json_error("dismisssuggestion", suggestion_id) == {
        "error": "This suggestion is no longer pending.",
        "hint": "Refresh the inbox: someone already decided it.",
    }
    assert audit_log.actions() == []


def test_dismisssuggestion_with_an_unknown_id_is_a_clear_error(db):
    missing = uuid.UUID(int=3)
    assert cli_error("dismisssuggestion", str(missing)).startswith(f"No tool suggestion {missing}.")
    assert cli_json_error("dismisssuggestion", "figma")["error"] == "'figma' is not a valid suggestion id."
