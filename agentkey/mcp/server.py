"""The five MCP tools: the agent API of DESIGN §4, one tool per operation.

Every tool runs exactly what its REST twin runs: the same rate-limit tier and
key (``agent:<id>``), the same per-operation function from ``grants.api`` /
``catalog.api`` (input serializer, scoped lookup, service, audit event) and the
same body. Domain and validation errors become tool errors (``isError``) whose
text is the REST error body, ``{"error", "hint", ...}``.

The ORM is synchronous, so each call runs in a worker thread with the HTTP
request's context (request id, client address) bound for the audit log.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
from django.db import close_old_connections
from django.http import HttpRequest
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from accounts.api import INVALID_ID
from accounts.models import Agent
from agentkey.core import context, ratelimit
from agentkey.core.api import as_domain_error
from agentkey.core.errors import SERVER_ERROR, NotFound
from agentkey.core.links import console_link
from grants.api import access_request, credential_fetch, guide_suggestion, suggestion_submit, tool_list

logger = logging.getLogger("agentkey.mcp")

#: Key of the authenticated caller in the WSGI environ (set by ``mount``, never from a header).
CALLER_KEY = "agentkey.mcp.caller"


@dataclass(frozen=True)
class Caller:
    """The agent an MCP HTTP request authenticated as, and that request (for rate limits and audit)."""

    agent: Agent
    request: HttpRequest
    context: context.RequestContext


INSTRUCTIONS = """\
AgentKey hands out the credentials for company tools. You start with no access to any tool.

1. Call list_tools to see the catalog and your access to each tool (your_access: none, pending,
   approved, denied, revoked, expired).
2. For a tool you need and lack, call request_access with a specific reason a human can judge.
   A human approves it in the AgentKey dashboard; the result gives its URL. Carry on with other
   work and check list_tools later. If a request is denied, read denial_reason; do not resend it.
3. If the tool you need is not in the catalog, call suggest_tool.
4. Once approved, call get_credential just before each use and follow its instructions. Never
   print, log, store, commit or repeat a credential; pass it straight to the call that needs it
   and fetch it again next time.
5. When you learn something the tool's instructions should say, call suggest_instructions.

Errors come back as {"error", "hint"}: do what the hint says. On a rate-limit error wait
retry_after seconds before trying again.
"""

mcp_server: MCPServer[Any] = MCPServer(
    name="agentkey",
    title="AgentKey",
    description="Credential broker for AI agents: request access to company tools, fetch credentials.",
    instructions=INSTRUCTIONS,
    log_level="WARNING",
)


# --- plumbing ---------------------------------------------------------------------------------------


def _text_result(body: dict[str, Any], *, is_error: bool = False) -> CallToolResult:
    text = json.dumps(body, ensure_ascii=False)
    if is_error:
        return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=body)


def _invoke(caller: Caller, tier: str, operation: Callable[[Agent], dict[str, Any]]) -> CallToolResult:
    """Run one tool call as the REST view would: rate limit, operation, error shape."""
    token = context.bind(caller.context)
    close_old_connections()
    try:
        ratelimit.hit(caller.request, tier=tier, key=f"agent:{caller.agent.id}")
        return _text_result(operation(caller.agent))
    except Exception as exc:
        err = as_domain_error(exc)
        if err is None:
            # A bug: the type goes to the log, the agent gets the generic 500 body.
            logger.exception("MCP tool call failed: %s", type(exc).__name__)
            return _text_result({"error": SERVER_ERROR.error, "hint": SERVER_ERROR.hint}, is_error=True)
        return _text_result(err.body(), is_error=True)
    finally:
        close_old_connections()
        context.reset(token)


async def _call(ctx: Context, tier: str, operation: Callable[[Agent], dict[str, Any]]) -> CallToolResult:
    request = ctx.request_context.request
    environ = getattr(request, "scope", {}).get("wsgi_environ", {})
    caller = environ.get(CALLER_KEY)
    if not isinstance(caller, Caller):  # mount authenticates every request; refuse if it did not
        raise RuntimeError("MCP request without an authenticated agent")
    return await anyio.to_thread.run_sync(_invoke, caller, tier, operation)


def _tool_uuid(value: str) -> uuid.UUID:
    """As the REST path check: a tool id that is not a UUID is a 404 with the same message."""
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise NotFound(INVALID_ID.format(label="Tool ID", lower="tool id")) from None


def _arguments(**values: str | None) -> dict[str, str]:
    """Tool arguments as the JSON object REST would parse: omitted ones stay absent."""
    return {name: value for name, value in values.items() if value is not None}


ToolId = Annotated[str, Field(description="The tool's id, from list_tools.")]


# --- the tools --------------------------------------------------------------------------------------


@mcp_server.tool(
    description=(
        "List every tool in your organization's AgentKey catalog with its id and your access to it "
        "(your_access: none, pending, approved, denied, revoked, expired; denial_reason when denied; "
        "expires_at when access is time-bound). Call this first, and again to see whether a pending "
        "request was approved. You start with no access: request what you need with request_access."
    ),
    annotations=ToolAnnotations(
        title="List tools and your access", read_only_hint=True, open_world_hint=False
    ),
)
async def list_tools(ctx: Context) -> CallToolResult:
    return await _call(ctx, "read", lambda agent: tool_list(agent=agent))


@mcp_server.tool(
    description=(
        "Ask a human for access to a tool from list_tools. Give a specific reason a human can judge: "
        "the task, why this tool, what you will do with it (e.g. 'File the 3 failing checkout tests "
        "from today's run as issues in the WEB project'), not 'I need access'. Optionally ask for a "
        "duration (1h to 30d, e.g. 8h). The request waits for a human: the result gives the dashboard "
        "URL where it is reviewed. Carry on with other work and check list_tools later; do not resend "
        "a denied request. If the tool is not in the catalog, use suggest_tool instead."
    ),
    annotations=ToolAnnotations(
        title="Request access to a tool", read_only_hint=False, open_world_hint=False
    ),
)
async def request_access(
    ctx: Context,
    tool_id: ToolId,
    reason: Annotated[
        str,
        Field(description="Why you need this tool, 5 to 500 characters. Shown to the human who decides."),
    ],
    duration: Annotated[
        str | None,
        Field(description="Optional: how long you need access, 1h to 30d (e.g. 8h, 7d)."),
    ] = None,
) -> CallToolResult:
    def operation(agent: Agent) -> dict[str, Any]:
        body = access_request(
            agent=agent, tool_id=_tool_uuid(tool_id), data=_arguments(reason=reason, duration=duration)
        )
        return {
            **body,
            "dashboard_url": console_link("inbox", anchor=f"grant-{body['request_id']}"),
            "next": "A human reviews this request in the AgentKey dashboard at dashboard_url. "
            "Carry on with other work and call list_tools later to see whether it was approved.",
        }

    return await _call(ctx, "request", operation)


@mcp_server.tool(
    description=(
        "Suggest a tool your organization's catalog lacks (list_tools does not show it). Give its name, "
        "its website URL if you know it, and a specific reason. Other agents may back the same "
        "suggestion; when an admin adds the tool you get a pending access request for it automatically. "
        "If the tool already exists the error gives its tool_id: use request_access instead."
    ),
    annotations=ToolAnnotations(title="Suggest a missing tool", read_only_hint=False, open_world_hint=False),
)
async def suggest_tool(
    ctx: Context,
    name: Annotated[str, Field(description="The tool's name (e.g. Linear, Slack), 2 to 120 characters.")],
    reason: Annotated[
        str,
        Field(description="Why the organization needs this tool, 5 to 500 characters. Shown to the admin."),
    ],
    url: Annotated[str | None, Field(description="The tool's website URL, e.g. https://linear.app.")] = None,
) -> CallToolResult:
    def operation(agent: Agent) -> dict[str, Any]:
        body = suggestion_submit(agent=agent, data=_arguments(name=name, url=url, reason=reason))
        return {
            **body,
            "dashboard_url": console_link("inbox", anchor=f"tool-suggestion-{body['suggestion_id']}"),
        }

    return await _call(ctx, "request", operation)


@mcp_server.tool(
    description=(
        "Fetch the credential for a tool you have approved access to, with the company's instructions "
        "for using it. Call it just before each use and follow the instructions. Never print, echo, "
        "log, store, commit or repeat the credential (not in files, code, messages or your replies): "
        "pass it straight to the call that needs it and fetch it again next time, because access can "
        "be revoked or expire at any moment. An error means you lack access: read its hint."
    ),
    annotations=ToolAnnotations(title="Fetch a tool credential", read_only_hint=True, open_world_hint=False),
)
async def get_credential(ctx: Context, tool_id: ToolId) -> CallToolResult:
    return await _call(
        ctx, "credential", lambda agent: credential_fetch(agent=agent, tool_id=_tool_uuid(tool_id))
    )


@mcp_server.tool(
    description=(
        "Suggest an improvement to the usage instructions of a tool you have approved access to: a "
        "company-specific fact you learned (a project key, a required field, a gotcha) that future agents "
        "should know. A human reviews it. Never include a credential or other secret in it."
    ),
    annotations=ToolAnnotations(
        title="Suggest better instructions", read_only_hint=False, open_world_hint=False
    ),
)
async def suggest_instructions(
    ctx: Context,
    tool_id: ToolId,
    learned: Annotated[
        str, Field(description="The concrete fact to add to the guide, 5 to 2000 characters.")
    ],
    why: Annotated[
        str,
        Field(description="Why it matters for future agent runs, 5 to 2000 characters. Shown to the admin."),
    ],
) -> CallToolResult:
    return await _call(
        ctx,
        "request",
        lambda agent: guide_suggestion(
            agent=agent, tool_id=_tool_uuid(tool_id), data=_arguments(learned=learned, why=why)
        ),
    )
