"""Agent endpoints about access: the catalog view, /me, requests, the vend, guide suggestions.

Output is built as plain dicts on the read and vend paths (a DRF serializer
costs ~20 µs per object, which would make a 500-tool catalog 10 ms slower);
the OutputSerializers document the shape for OpenAPI, and the schema tests
check the two agree.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import AgentAPIView
from accounts.models import Agent
from agentkey.core.api import ErrorSerializer, SchemaDocumentSerializer, TextField, body_schema
from agentkey.core.durations import DURATION_PATTERN, parse_duration
from agentkey.core.errors import Conflict, NotFound, ValidationFailed
from catalog import api as catalog_api
from catalog.models import proxy_path
from catalog.selectors import tools_visible_to_agent
from grants.anomalies import canary_suggestion_check
from grants.selectors import tool_access_for_agent
from grants.services import (
    TOOL_NOT_FOUND,
    check_duration,
    credential_vend,
    grant_request,
    guide_suggest_as_agent,
)

TOOL_ID = OpenApiParameter(
    "tool_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="A tool id from GET /api/tools."
)
ERRORS = dict.fromkeys((400, 401, 403, 404, 409, 413, 415, 429, 503), ErrorSerializer)
#: The open schema-discovery GETs: a non-UUID path id, the pre-auth limit, Redis down.
DISCOVERY_ERRORS = dict.fromkeys((404, 429, 503), ErrorSerializer)
REQUEST_MESSAGE = "Your request has been submitted. A human admin will review it."
NO_ACCESS_HINT = (
    "You have no tool access yet. Call GET /api/tools to browse the catalog. "
    "If the tool exists, use POST /api/tools/{id}/request. If it does not exist, use POST /api/tools/suggest."
)


def _visible_tool(agent: Any, tool_id: uuid.UUID) -> Any:
    tool = tools_visible_to_agent(agent).filter(id=tool_id).first()
    if tool is None:
        raise NotFound(TOOL_NOT_FOUND)
    return tool


@extend_schema_field({"type": "string", "maxLength": 16, "pattern": DURATION_PATTERN})
class DurationField(TextField):
    """A duration such as ``8h``; the OpenAPI document carries its grammar (the range is checked too)."""


class ToolListApi(AgentAPIView):
    ratelimit_tier = "read"

    @extend_schema_serializer(component_name="ToolListOutput")
    class OutputSerializer(serializers.Serializer[Any]):
        tools = inline_serializer(
            "AgentTool",
            fields={
                "id": serializers.UUIDField(),
                "name": serializers.CharField(),
                "description": serializers.CharField(),
                "your_access": serializers.ChoiceField(
                    choices=["none", "pending", "approved", "denied", "revoked", "expired"]
                ),
                "denial_reason": serializers.CharField(required=False),
                "expires_at": serializers.DateTimeField(required=False),
                "proxy_url": serializers.CharField(
                    required=False, help_text="Proxy-mode tools only: call the tool's API through this path."
                ),
            },
            many=True,
        )

    @extend_schema(operation_id="tools_list", responses={200: OutputSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        return Response(tool_list(agent=self.agent))


class MeApi(AgentAPIView):
    ratelimit_tier = "read"

    @extend_schema_serializer(component_name="MeOutput")
    class OutputSerializer(serializers.Serializer[Any]):
        agent_id = serializers.UUIDField()
        agent_name = serializers.CharField()
        description = serializers.CharField()
        created_at = serializers.DateTimeField()
        tools_approved = serializers.ListField(child=serializers.CharField())
        tools_pending = serializers.ListField(child=serializers.CharField())
        tools_denied = inline_serializer(
            "DeniedTool",
            fields={"name": serializers.CharField(), "reason": serializers.CharField(allow_null=True)},
            many=True,
        )
        tools_expiring = inline_serializer(
            "ExpiringTool",
            fields={"name": serializers.CharField(), "expires_at": serializers.DateTimeField()},
            many=True,
        )
        tools_available = serializers.IntegerField()
        hint = serializers.CharField(required=False)

    @extend_schema(operation_id="me", responses={200: OutputSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        agent = self.agent
        tools = tool_access_for_agent(agent)
        approved = [t for t in tools if t.your_access == "approved"]
        pending = [t.name for t in tools if t.your_access == "pending"]
        body: dict[str, Any] = {
            "agent_id": str(agent.id),
            "agent_name": agent.name,
            "description": agent.description,
            "created_at": agent.created_at.isoformat().replace("+00:00", "Z"),
            "tools_approved": [t.name for t in approved],
            "tools_pending": pending,
            "tools_denied": [
                {"name": t.name, "reason": t.denial_reason} for t in tools if t.your_access == "denied"
            ],
            "tools_expiring": [
                {"name": t.name, "expires_at": t.expires_at.isoformat().replace("+00:00", "Z")}
                for t in approved
                if t.expires_at is not None
            ],
            "tools_available": len(tools),
        }
        if not approved and not pending:
            body["hint"] = NO_ACCESS_HINT
        return Response(body)


class ToolRequestApi(AgentAPIView):
    ratelimit_tier = "request"
    public_methods = frozenset({"GET"})
    path_ids = {"tool_id": "Tool ID"}

    @extend_schema_serializer(component_name="AccessRequestInput")
    class InputSerializer(serializers.Serializer[Any]):
        reason = TextField(
            min_length=5,
            max_length=500,
            help_text="Why you need this tool. Be specific — this is shown to the admin who approves or denies.",
        )
        duration = DurationField(
            required=False,
            max_length=16,
            help_text="Optional: how long you need access, from 1h to 30d (e.g. 8h, 7d). "
            "The approver may shorten it. Omit for as long as the approver allows.",
        )

        def validate_duration(self, value: str) -> str:
            try:
                check_duration(parse_duration(value))
            except ValueError as exc:
                raise serializers.ValidationError(str(exc)) from None
            except ValidationFailed as exc:
                raise serializers.ValidationError(exc.error) from None
            return value

    @extend_schema_serializer(component_name="AccessRequestOutput")
    class OutputSerializer(serializers.Serializer[Any]):
        request_id = serializers.UUIDField()
        status = serializers.CharField()
        message = serializers.CharField()

    EXAMPLES = {
        "reason": "I need Linear access to create and track bugs for the backend team.",
        "duration": "8h",
    }

    @extend_schema(
        operation_id="tools_request_schema",
        parameters=[TOOL_ID],
        responses={200: SchemaDocumentSerializer, **DISCOVERY_ERRORS},
    )
    def get(self, request: Request, tool_id: uuid.UUID) -> Response:
        return Response(
            {
                "schema": {
                    "method": "POST",
                    "path": "/api/tools/{tool_id}/request",
                    "description": "Request access to a tool in the catalog. A human admin will review your request.",
                    "body": body_schema(self.InputSerializer(), self.EXAMPLES),
                    "responses": {
                        "201": {
                            "description": "Request submitted",
                            "example": {
                                "request_id": "uuid",
                                "status": "pending",
                                "message": REQUEST_MESSAGE,
                            },
                        },
                        "403": {"description": "Agent doesn't have access or is suspended"},
                        "409": {"description": "Agent already has access or a pending request for this tool"},
                    },
                }
            }
        )

    @extend_schema(
        operation_id="tools_request",
        parameters=[TOOL_ID],
        request=InputSerializer,
        responses={201: OutputSerializer, **ERRORS},
    )
    def post(self, request: Request, tool_id: uuid.UUID) -> Response:
        return Response(access_request(agent=self.agent, tool_id=tool_id, data=request.data), status=201)


class CredentialApi(AgentAPIView):
    ratelimit_tier = "credential"
    # No HEAD: it would decrypt and audit a vend whose body is never sent.
    http_method_names = ["get", "options"]
    path_ids = {"tool_id": "Tool ID"}
    refuse_foreign_origins = True

    @extend_schema_serializer(component_name="CredentialOutput")
    class OutputSerializer(serializers.Serializer[Any]):
        tool_id = serializers.UUIDField()
        tool_name = serializers.CharField()
        auth_type = serializers.ChoiceField(choices=["api_key", "oauth_token", "bot_token", "other"])
        credential = serializers.JSONField(
            help_text="A string; for oauth_token a JSON object when stored as one."
        )
        instructions = serializers.CharField()
        suggest_instructions_endpoint = serializers.CharField()
        expires_at = serializers.DateTimeField(required=False)

    @extend_schema(
        operation_id="tools_credentials", parameters=[TOOL_ID], responses={200: OutputSerializer, **ERRORS}
    )
    def get(self, request: Request, tool_id: uuid.UUID) -> Response:
        response = Response(credential_fetch(agent=self.agent, tool_id=tool_id))
        response["Cache-Control"] = "no-store, private"
        response["Pragma"] = "no-cache"
        return response


class GuideSuggestApi(AgentAPIView):
    ratelimit_tier = "request"
    public_methods = frozenset({"GET"})
    path_ids = {"tool_id": "Tool ID"}

    @extend_schema_serializer(component_name="GuideSuggestionInput")
    class InputSerializer(serializers.Serializer[Any]):
        learned = TextField(
            min_length=5,
            max_length=2000,
            help_text="The concrete fact the agent learned and wants added to the guide.",
        )
        why = TextField(
            min_length=5,
            max_length=2000,
            help_text="Why this fact matters for future agent runs. This is shown to the admin.",
        )

    @extend_schema_serializer(component_name="GuideSuggestionOutput")
    class OutputSerializer(serializers.Serializer[Any]):
        suggestion_id = serializers.UUIDField()
        status = serializers.CharField()
        existing = serializers.BooleanField()
        message = serializers.CharField()

    EXAMPLES = {
        "learned": "Project key is PLATFORM and incident triage happens in channel C123456.",
        "why": "Future agents need this to file issues against the right project without rediscovering the key.",
    }

    @extend_schema(
        operation_id="tools_instructions_suggest_schema",
        responses={200: SchemaDocumentSerializer, **DISCOVERY_ERRORS},
    )
    def get(self, request: Request, tool_id: uuid.UUID) -> Response:
        return Response(
            {
                "schema": {
                    "method": "POST",
                    "path": "/api/tools/{tool_id}/instructions/suggest",
                    "description": "Suggest an improvement to the current usage guide for a tool you already "
                    "use. Use this after discovering a company-specific fact that should be captured for "
                    "future agents.",
                    "body": body_schema(self.InputSerializer(), self.EXAMPLES),
                    "responses": {
                        "201": {
                            "description": "Suggestion submitted (or support added to existing)",
                            "example": {
                                "suggestion_id": "uuid",
                                "status": "pending",
                                "existing": False,
                                "message": "Your instruction suggestion has been submitted. "
                                "A human admin will review it.",
                            },
                        },
                        "403": {"description": "Tool is not approved for this agent."},
                        "409": {
                            "description": "An equivalent suggestion for the current guide version was dismissed."
                        },
                    },
                }
            }
        )

    @extend_schema(
        operation_id="tools_instructions_suggest",
        parameters=[TOOL_ID],
        request=InputSerializer,
        responses={201: OutputSerializer, **ERRORS},
    )
    def post(self, request: Request, tool_id: uuid.UUID) -> Response:
        return Response(guide_suggestion(agent=self.agent, tool_id=tool_id, data=request.data), status=201)


# --- one function per agent operation --------------------------------------------------------------
# Each REST view above and its MCP tool twin (agentkey.mcp) call the same function, so both
# interfaces validate, call the service, audit and shape the body identically. ``data`` is the
# parsed JSON object of the request (REST) or the tool arguments (MCP).


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def tool_list(*, agent: Agent) -> dict[str, Any]:
    """``GET /api/tools``: every visible tool and this agent's access to it."""
    tools = []
    for t in tool_access_for_agent(agent):
        item: dict[str, Any] = {
            "id": str(t.id),
            "name": t.name,
            "description": t.description,
            "your_access": t.your_access,
        }
        if t.denial_reason:
            item["denial_reason"] = t.denial_reason
        if t.expires_at is not None:
            item["expires_at"] = _iso(t.expires_at)
        if t.proxied:
            item["proxy_url"] = proxy_path(t.id)
        tools.append(item)
    return {"tools": tools}


def access_request(*, agent: Agent, tool_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """``POST /api/tools/{id}/request``: validate, open (or reopen) the pending grant."""
    serializer = ToolRequestApi.InputSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    tool = _visible_tool(agent, tool_id)
    duration = serializer.validated_data.get("duration")
    grant = grant_request(
        agent=agent,
        tool=tool,
        reason=serializer.validated_data["reason"],
        duration=parse_duration(duration) if duration else None,
    )
    return {"request_id": str(grant.id), "status": "pending", "message": REQUEST_MESSAGE}


def credential_fetch(*, agent: Agent, tool_id: uuid.UUID) -> dict[str, Any]:
    """``GET /api/tools/{id}/credentials``: the vend (decrypts and audits)."""
    vended = credential_vend(agent=agent, tool_id=tool_id)
    tool = vended.tool
    body: dict[str, Any] = {
        "tool_id": str(tool.id),
        "tool_name": tool.name,
        "auth_type": tool.auth_type,
        "credential": vended.credential,
        "instructions": tool.usage_guide,
        "suggest_instructions_endpoint": f"/api/tools/{tool.id}/instructions/suggest",
    }
    if vended.expires_at is not None:
        body["expires_at"] = _iso(vended.expires_at)
    return body


def guide_suggestion(*, agent: Agent, tool_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """``POST /api/tools/{id}/instructions/suggest``: needs an approved grant."""
    serializer = GuideSuggestApi.InputSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    tool = _visible_tool(agent, tool_id)
    result = guide_suggest_as_agent(
        agent=agent,
        tool=tool,
        learned=serializer.validated_data["learned"],
        why=serializer.validated_data["why"],
    )
    return {
        "suggestion_id": str(result.suggestion.id),
        "status": result.suggestion.status,
        "existing": result.existing,
        "message": result.message,
    }


class ToolSuggestApi(catalog_api.ToolSuggestApi):
    """``POST /api/tools/suggest``: the catalog's endpoint, with the canary check of grants."""

    @extend_schema(
        operation_id="tools_suggest",
        request=catalog_api.ToolSuggestApi.InputSerializer,
        responses={201: catalog_api.ToolSuggestApi.OutputSerializer, **catalog_api.ERRORS},
    )
    def post(self, request: Request) -> Response:
        return Response(suggestion_submit(agent=self.agent, data=request.data), status=201)


def suggestion_submit(*, agent: Agent, data: Any) -> dict[str, Any]:
    """``POST /api/tools/suggest`` (and the MCP ``suggest_tool``). A suggestion the catalog matched
    to a canary tool raises a high alert; the agent gets the same 409 as for any existing tool."""
    try:
        return catalog_api.suggestion_submit(agent=agent, data=data)
    except Conflict as exc:
        tool_id = exc.extra.get("tool_id")
        if isinstance(tool_id, str):
            canary_suggestion_check(agent=agent, tool_id=tool_id)
        raise
