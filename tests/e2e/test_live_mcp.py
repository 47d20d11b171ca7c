"""The MCP endpoint against a live `make serve` (issue #5 acceptance).

The official `mcp` client (ClientSession over the streamable HTTP client)
connects to real gunicorn with production settings on PostgreSQL and Redis,
lists the tools, requests access, and after `manage.py approve` fetches the
credential. The audit rows of that journey equal those of the same journey
over REST, and an invalid key is refused.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
import requests
from mcp import MCPError

from tests.support.live import LiveStack, live_stack
from tests.support.mcp import McpAgent

pytestmark = pytest.mark.live

REASON = "I file the failing checkout tests as issues for the web team."


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    with live_stack(tmp_path_factory.mktemp("live-mcp"), redis_db=10) as running:
        yield running


def audit_rows(stack: LiveStack, agent_id: str) -> list[list[Any]]:
    out = stack.shell(
        "import json; from audit.models import AuditEvent; from django.db.models import Q; "
        f"rows = AuditEvent.objects.filter(Q(actor_id='{agent_id}') | Q(metadata__agent_id='{agent_id}')"
        f" | Q(target_id='{agent_id}')).order_by('id'); "
        "print(json.dumps([[e.action, e.actor_type, e.target_type, sorted(e.metadata), bool(e.request_id)] "
        "for e in rows]))"
    )
    return list(json.loads(out.strip().splitlines()[-1]))


def grant_rows(stack: LiveStack, grant_id: str) -> list[list[Any]]:
    out = stack.shell(
        "import json; from audit.models import AuditEvent; "
        f"rows = AuditEvent.objects.filter(target_id='{grant_id}').order_by('id'); "
        "print(json.dumps([[e.action, e.actor_type, e.target_type, sorted(e.metadata), bool(e.request_id)] "
        "for e in rows]))"
    )
    return list(json.loads(out.strip().splitlines()[-1]))


def test_the_mcp_journey_against_make_serve_audits_like_rest(stack):
    org = stack.manage("createorg", "Live MCP Co")
    over_mcp = stack.manage("createagent", "--org", org["slug"], "--name", "Mcp-Agent")
    over_rest = stack.manage("createagent", "--org", org["slug"], "--name", "Rest-Agent")
    credential = "lin_api_" + "m" * 30
    stack.secrets += [over_mcp["api_key"], over_rest["api_key"], credential]
    tool = stack.manage("createtool", "--org", org["slug"], "--name", "Linear", stdin=credential)
    tool_id = tool["tool_id"]

    # MCP: list -> request -> approve (CLI) -> fetch
    agent = McpAgent(f"{stack.base_url}/mcp", over_mcp["api_key"])
    assert set(agent.tool_names()) == {
        "list_tools",
        "request_access",
        "suggest_tool",
        "get_credential",
        "suggest_instructions",
    }
    assert agent.call("list_tools").body["tools"][0]["your_access"] == "none"
    requested = agent.call("request_access", tool_id=tool_id, reason=REASON)
    assert not requested.is_error
    assert requested.body["dashboard_url"].startswith(stack.base_url + "/inbox/")
    refused = agent.call("get_credential", tool_id=tool_id)
    assert refused.is_error
    assert "pending" in refused.body["hint"]
    mcp_grant = requested.body["request_id"]
    stack.manage("approve", mcp_grant)
    vended = agent.call("get_credential", tool_id=tool_id)
    assert not vended.is_error
    assert vended.body["credential"] == credential

    # The same journey over REST
    rest = requests.Session()
    rest.headers["Authorization"] = f"Bearer {over_rest['api_key']}"
    created = rest.post(f"{stack.base_url}/api/tools/{tool_id}/request", json={"reason": REASON}, timeout=10)
    assert created.status_code == 201
    assert rest.get(f"{stack.base_url}/api/tools/{tool_id}/credentials", timeout=10).status_code == 403
    rest_grant = created.json()["request_id"]
    stack.manage("approve", rest_grant)
    assert rest.get(f"{stack.base_url}/api/tools/{tool_id}/credentials", timeout=10).json()["credential"] == (
        credential
    )

    mcp_rows = grant_rows(stack, mcp_grant)
    assert [row[0] for row in mcp_rows] == ["grant.requested", "grant.approved"]
    assert mcp_rows == grant_rows(stack, rest_grant)
    assert audit_rows(stack, over_mcp["agent_id"]) == audit_rows(stack, over_rest["agent_id"])
    assert "credential.vended" in [row[0] for row in audit_rows(stack, over_mcp["agent_id"])]


def test_an_invalid_key_is_refused(stack):
    with pytest.raises(BaseExceptionGroup) as refused:
        McpAgent(f"{stack.base_url}/mcp", "sk_agent_" + "z" * 32).tool_names()
    assert refused.group_contains(MCPError, depth=None)
    response = httpx2.post(
        f"{stack.base_url}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
        headers={
            "Authorization": "Bearer sk_agent_" + "z" * 32,
            "Accept": "application/json, text/event-stream",
        },
        timeout=10,
    )
    assert response.status_code == 401
    assert response.json()["error"] == "Invalid API key."
    assert response.json()["hint"]
    assert requests.get(f"{stack.base_url}/healthz", timeout=10).status_code == 200
