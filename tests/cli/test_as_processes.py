"""The commands as an operator's shell runs them: real processes, exit codes, pipes.

These tests are transactional so the child process sees the rows the test
committed and the test sees the rows the child committed.
"""

from __future__ import annotations

import json
import uuid

import pytest

from accounts.models import Agent
from audit.models import Action, AuditEvent
from catalog.models import Tool
from tests.factories import make_agent, make_org, new_credential
from tests.support.http import AgentClient
from vault.services import secret_reveal

pytestmark = pytest.mark.django_db(transaction=True)


def test_bad_id_with_json_exits_1_with_a_json_error_on_stderr(manage):
    done = manage("suspendagent", "not-a-uuid", "--json")

    assert done.returncode == 1
    assert done.stdout == ""
    assert json.loads(done.stderr) == {
        "error": "'not-a-uuid' is not a valid agent id.",
        "hint": "Pass the agent's UUID.",
    }


def test_bad_input_without_json_exits_nonzero_with_a_readable_command_error(manage):
    missing = uuid.UUID(int=11)
    done = manage("approve", str(missing))

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip() == (
        f"CommandError: No access grant {missing}. Use the request_id the agent received, "
        "or find the grant in the admin under Access grants."
    )
    assert "Traceback" not in done.stderr


def test_a_missing_required_option_exits_2_with_usage(manage):
    done = manage("deny", str(uuid.UUID(int=12)))
    assert done.returncode == 2
    assert "the following arguments are required: --reason" in done.stderr


def test_createagent_prints_a_working_api_key_in_json(manage):
    org = make_org("Acme")

    done = manage("createagent", "--org", org.slug, "--name", "Release-Agent", "--json")

    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) == {"agent_id", "name", "org_id", "api_key", "key_expires_at"}
    assert Agent.objects.get(id=out["agent_id"]).org_id == org.id
    assert AuditEvent.objects.filter(action=Action.AGENT_CREATED, target_id=out["agent_id"]).exists()
    assert AgentClient(out["api_key"]).me().status_code == 200


def test_createtool_reads_the_credential_from_a_pipe(manage):
    org = make_org("Acme")
    issued = make_agent(org, "Onboarding-Agent")
    secret = new_credential("lin_api")

    done = manage("createtool", "--org", org.slug, "--name", "Linear", "--json", stdin=secret + "\n")

    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout
    assert secret not in done.stderr
    tool = Tool.objects.select_related("secret").get(id=json.loads(done.stdout)["tool_id"])
    assert tool.secret is not None
    assert secret_reveal(secret=tool.secret) == secret

    assigned = manage("assign", "--agent", str(issued.agent.id), "--tool", str(tool.id))
    assert assigned.returncode == 0, assigned.stderr
    assert AgentClient(issued.key.plaintext).credentials(tool.id).json()["credential"] == secret


def test_createtool_with_no_standard_input_fails_with_how_to_pipe_it(manage):
    org = make_org("Acme")

    done = manage("createtool", "--org", org.slug, "--name", "Linear")

    assert done.returncode == 1
    assert done.stderr.startswith("CommandError: No credential on stdin. Pipe it in, for example:")
    assert not Tool.objects.exists()
