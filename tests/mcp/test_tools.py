"""The MCP tools through the official client: the same services, errors, limits and audit as REST."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest
from mcp import MCPError

from accounts.services import agent_key_rotate, agent_suspend
from agentkey.core.errors import RATE_LIMITED
from audit.models import AuditEvent
from grants.models import AccessGrant
from grants.services import grant_approve, grant_assign
from tests.factories import make_agent, make_tool
from tests.support.http import AgentClient
from tests.support.mcp import McpAgent, run_async

TOOLS = {"list_tools", "request_access", "suggest_tool", "get_credential", "suggest_instructions"}
REASON = "I file the failing checkout tests as issues for the web team."


@pytest.fixture
def limits(settings):
    def set_limits(**tiers: str) -> None:
        settings.AGENTKEY_RATELIMITS = {**settings.AGENTKEY_RATELIMITS, **tiers}

    return set_limits


def audit_rows(since: int) -> list[tuple[Any, ...]]:
    """What an auditor compares between two interfaces: ids of the grant/agent aside."""
    return [
        (e.action, e.actor_type, e.actor_label, e.target_type, e.target_label, sorted(e.metadata))
        for e in AuditEvent.objects.filter(id__gt=since).order_by("id")
    ]


def last_audit_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def post_raw(url: str, headers: dict[str, str]) -> httpx2.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    return httpx2.post(url, json=body, headers={**accept, **headers}, timeout=10)


# --- the tools -------------------------------------------------------------------------------------


def test_the_five_tools_are_listed_with_descriptions_that_teach_the_protocol(mcp):
    tools = {t.name: t for t in mcp.list_tool_definitions()}
    assert set(tools) == TOOLS
    assert "no access" in tools["list_tools"].description
    assert "reason" in tools["request_access"].description
    assert "Never print" in tools["get_credential"].description
    assert "suggest_tool" in tools["request_access"].description
    assert tools["request_access"].input_schema["required"] == ["tool_id", "reason"]
    assert tools["get_credential"].annotations.read_only_hint is True


def test_the_journey_over_mcp_from_zero_access_to_the_credential(mcp, agent, tool, credential, approver):
    assert mcp.call("list_tools").body["tools"][0]["your_access"] == "none"
    requested = mcp.call("request_access", tool_id=str(tool.id), reason=REASON, duration="8h")
    assert not requested.is_error
    assert requested.body["status"] == "pending"
    grant_id = requested.body["request_id"]
    assert requested.body["dashboard_url"].endswith(f"/inbox/#grant-{grant_id}")
    assert requested.body["dashboard_url"] in requested.raw.content[0].text
    assert mcp.call("list_tools").body["tools"][0]["your_access"] == "pending"

    grant_approve(grant=AccessGrant.objects.get(id=grant_id), reviewer=approver)
    vended = mcp.call("get_credential", tool_id=str(tool.id))
    assert not vended.is_error
    assert vended.body["credential"] == credential
    assert vended.body["instructions"] == "Team key: PLATFORM."
    assert "expires_at" in vended.body, "the 8h duration the agent asked for"

    suggested = mcp.call(
        "suggest_instructions",
        tool_id=str(tool.id),
        learned="Bugs go to project WEB, not PLATFORM.",
        why=REASON,
    )
    assert not suggested.is_error
    assert suggested.body["status"] == "pending"


def test_suggest_tool_gives_the_suggestion_and_where_a_human_reviews_it(mcp):
    first = mcp.call("suggest_tool", name="Notion", url="https://notion.so", reason=REASON)
    assert not first.is_error
    assert first.body["existing"] is False
    assert first.body["dashboard_url"].endswith(f"#tool-suggestion-{first.body['suggestion_id']}")
    again = mcp.call("suggest_tool", name="notion", reason=REASON)
    assert again.body["existing"] is True


# --- errors are REST's errors ----------------------------------------------------------------------


def test_errors_carry_the_rest_error_and_hint(mcp, issued, tool):
    rest = AgentClient(issued.key.plaintext)
    cases = [
        (("get_credential", {"tool_id": "not-a-uuid"}), rest.credentials("not-a-uuid")),
        (("request_access", {"tool_id": str(tool.id), "reason": "x"}), rest.request_access(tool.id, "x")),
        (
            ("request_access", {"tool_id": str(tool.id), "reason": REASON, "duration": "90d"}),
            rest.request_access(tool.id, REASON, duration="90d"),
        ),
        (("get_credential", {"tool_id": str(tool.id)}), rest.credentials(tool.id)),
        (
            ("suggest_instructions", {"tool_id": str(tool.id), "learned": "Project WEB.", "why": REASON}),
            rest.suggest_instructions(tool.id, "Project WEB.", REASON),
        ),
        (("suggest_tool", {"name": "Linear", "reason": REASON}), rest.suggest("Linear", REASON)),
    ]
    for (name, arguments), response in cases:
        assert response.status_code >= 400
        result = mcp.call(name, **arguments)
        assert result.is_error, name
        assert result.body == response.json(), name
        assert result.body["hint"]


def test_another_organizations_tool_is_not_found_as_over_rest(mcp, issued, other_org):
    foreign = make_tool(other_org, "Globex Jira")
    over_rest = AgentClient(issued.key.plaintext).request_access(foreign.id, REASON)
    assert over_rest.status_code == 404
    for name, arguments in [
        ("request_access", {"reason": REASON}),
        ("get_credential", {}),
        ("suggest_instructions", {"learned": "Project WEB.", "why": REASON}),
    ]:
        result = mcp.call(name, tool_id=str(foreign.id), **arguments)
        assert result.is_error
        assert result.body == over_rest.json(), name
    assert not AccessGrant.objects.filter(tool=foreign).exists()


# --- rate limits are REST's buckets ----------------------------------------------------------------


def test_an_mcp_call_and_a_rest_call_count_against_the_same_bucket(mcp, issued, limits):
    limits(read="2/m")
    rest = AgentClient(issued.key.plaintext)
    assert rest.tools().status_code == 200
    assert not mcp.call("list_tools").is_error
    assert rest.tools().status_code == 429, "the MCP call used the REST budget"
    refused = mcp.call("list_tools")
    assert refused.is_error
    assert refused.body["error"] == RATE_LIMITED.error
    assert refused.body["retry_after"] >= 1


def test_requests_and_suggestions_share_the_hourly_budget_across_interfaces(mcp, issued, tool, limits):
    limits(request="2/h")
    rest = AgentClient(issued.key.plaintext)
    assert not mcp.call("suggest_tool", name="Notion", reason=REASON).is_error
    assert rest.request_access(tool.id, REASON).status_code == 201
    refused = mcp.call("suggest_tool", name="Figma", reason=REASON)
    assert refused.is_error
    assert refused.body["error"] == RATE_LIMITED.error


def test_credential_fetches_have_their_own_tier(mcp, agent, tool, operator, limits):
    limits(read="1/m", credential="1/m")
    grant_assign(agent=agent, tool=tool, actor=operator)
    assert not mcp.call("list_tools").is_error
    assert not mcp.call("get_credential", tool_id=str(tool.id)).is_error
    assert mcp.call("get_credential", tool_id=str(tool.id)).body["error"] == RATE_LIMITED.error


def test_the_pre_auth_tier_refuses_key_guessing_before_mcp(mcp_url, limits):
    limits(preauth="2/m")
    guess = {"Authorization": "Bearer sk_agent_" + "x" * 32}
    assert [post_raw(mcp_url, guess).status_code for _ in range(2)] == [401, 401]
    refused = post_raw(mcp_url, guess)
    assert refused.status_code == 429
    assert refused.json()["error"] == RATE_LIMITED.error
    assert refused.headers["Retry-After"]


# --- audit: the same rows as REST ------------------------------------------------------------------


def test_the_audit_rows_of_an_mcp_journey_equal_those_of_the_rest_journey(org, mcp_url, approver, credential):
    def journey(interface: str) -> list[tuple[Any, ...]]:
        names = {
            f"Agent-{interface}": "<agent>",
            f"Linear-{interface}": "<tool>",
            f"Notion-{interface}": "<new>",
        }
        issued = make_agent(org, f"Agent-{interface}")
        tool = make_tool(org, f"Linear-{interface}", credential=credential)
        since = last_audit_id()
        if interface == "mcp":
            agent = McpAgent(mcp_url, issued.key.plaintext)
            grant_id = agent.call("request_access", tool_id=str(tool.id), reason=REASON).body["request_id"]
            grant_approve(grant=AccessGrant.objects.get(id=grant_id), reviewer=approver)
            assert agent.call("get_credential", tool_id=str(tool.id)).body["credential"] == credential
            agent.call("suggest_tool", name=f"Notion-{interface}", reason=REASON)
            agent.call("suggest_instructions", tool_id=str(tool.id), learned="Project WEB.", why=REASON)
        else:
            rest = AgentClient(issued.key.plaintext)
            grant_id = rest.request_access(tool.id, REASON).json()["request_id"]
            grant_approve(grant=AccessGrant.objects.get(id=grant_id), reviewer=approver)
            assert rest.credentials(tool.id).json()["credential"] == credential
            rest.suggest(f"Notion-{interface}", REASON)
            rest.suggest_instructions(tool.id, "Project WEB.", REASON)
        events = AuditEvent.objects.filter(id__gt=since, actor_type="agent")
        assert all(e.request_id and e.ip == "127.0.0.1" for e in events), "request context bound"

        def neutral(value: Any) -> Any:
            if not isinstance(value, str):
                return value
            for name, placeholder in names.items():
                value = value.replace(name, placeholder)
            return value

        return [tuple(neutral(x) for x in row) for row in audit_rows(since)]

    over_rest = journey("rest")
    over_mcp = journey("mcp")
    assert [row[0] for row in over_mcp] == [
        "grant.requested",
        "grant.approved",
        "credential.vended",
        "tool_suggestion.created",
        "tool_instruction_suggestion.created",
    ]
    assert over_mcp == over_rest


# --- who may connect -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "Missing bearer token."),
        ({"Authorization": "Basic abc"}, "Missing bearer token."),
        ({"Authorization": "Bearer sk_agent_" + "x" * 32}, "Invalid API key."),
    ],
)
def test_a_missing_or_unknown_key_is_401_with_the_error_shape(mcp_url, headers, error):
    response = post_raw(mcp_url, headers)
    assert response.status_code == 401
    assert response.json()["error"] == error
    assert response.json()["hint"]
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="agentkey"'
    assert response.headers["X-Request-ID"]


def test_the_official_client_is_refused_with_a_bad_key(mcp_url):
    with pytest.raises(BaseExceptionGroup) as refused:
        McpAgent(mcp_url, "sk_agent_" + "y" * 32).tool_names()
    assert refused.group_contains(MCPError, depth=None), "the SDK reports the HTTP refusal"


def test_a_suspended_agent_is_refused_and_the_refusal_audited(mcp_url, issued, operator):
    agent_suspend(agent=issued.agent, actor=operator)
    since = last_audit_id()
    response = post_raw(mcp_url, {"Authorization": f"Bearer {issued.key.plaintext}"})
    assert response.status_code == 403
    assert response.json()["error"] == "This agent has been suspended."
    assert [r[0] for r in audit_rows(since)] == ["auth.rejected_suspended"]


def test_a_rotated_out_key_is_refused_on_the_next_call(mcp_url, issued, operator):
    agent = McpAgent(mcp_url, issued.key.plaintext)
    assert agent.tool_names()
    fresh = agent_key_rotate(agent=issued.agent, actor=operator)
    response = post_raw(mcp_url, {"Authorization": f"Bearer {issued.key.plaintext}"})
    assert response.status_code == 401
    assert response.json()["error"] == "This API key has been rotated out."
    assert McpAgent(mcp_url, fresh.plaintext).tool_names()


def test_a_browser_origin_is_refused(mcp_url, issued):
    response = post_raw(
        mcp_url, {"Authorization": f"Bearer {issued.key.plaintext}", "Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert "Cross-origin" in response.json()["error"]


def test_other_paths_are_plain_django(mcp_url):
    base = mcp_url.removesuffix("/mcp")
    assert httpx2.get(base + "/healthz", timeout=10).status_code == 200
    assert httpx2.get(base + "/api/tools", timeout=10).status_code == 401


def test_concurrent_calls_are_served_statelessly(mcp, tool):
    async def many() -> list[bool]:
        async def one() -> bool:
            result = await asyncio.to_thread(mcp.call, "list_tools")
            return not result.is_error

        return list(await asyncio.gather(*(one() for _ in range(6))))

    assert all(run_async(many()))
