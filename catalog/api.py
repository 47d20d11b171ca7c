"""Agent endpoint: suggest a tool the catalog lacks."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import AgentAPIView
from accounts.models import Agent
from agentkey.core.api import ErrorSerializer, SchemaDocumentSerializer, TextField, body_schema
from catalog.normalize import normalize_name, normalize_url
from catalog.services import INVALID_URL, SUGGESTED_MESSAGE, tool_suggest

ERRORS = dict.fromkeys((400, 401, 403, 409, 413, 415, 429, 503), ErrorSerializer)


class ToolSuggestApi(AgentAPIView):
    ratelimit_tier = "request"
    public_methods = frozenset({"GET"})

    @extend_schema_serializer(component_name="ToolSuggestionInput")
    class InputSerializer(serializers.Serializer[Any]):
        name = TextField(
            min_length=2, max_length=120, help_text="The tool's name (e.g., Linear, Slack, Discord)."
        )
        url = TextField(
            required=False,
            allow_blank=True,
            max_length=500,
            help_text="The tool's website URL. Helps the admin identify and provision it.",
        )
        reason = TextField(
            min_length=5,
            max_length=500,
            help_text="Why the organization needs this tool. Be specific — this is shown to the admin.",
        )

        def validate_name(self, value: str) -> str:
            if not normalize_name(value):
                raise serializers.ValidationError("The name needs at least one letter or digit.")
            return value

        def validate_url(self, value: str) -> str:
            if value.strip() and normalize_url(value) is None:
                raise serializers.ValidationError(INVALID_URL.error)
            return value

    @extend_schema_serializer(component_name="ToolSuggestionOutput")
    class OutputSerializer(serializers.Serializer[Any]):
        suggestion_id = serializers.UUIDField()
        status = serializers.CharField()
        existing = serializers.BooleanField()
        message = serializers.CharField()

    EXAMPLES = {
        "name": "Linear",
        "url": "https://linear.app",
        "reason": "I need an issue tracker to create and manage engineering tasks.",
    }

    @extend_schema(
        operation_id="tools_suggest_schema",
        # Open: only the pre-auth limit (429) or Redis being down (503) can refuse it.
        responses={200: SchemaDocumentSerializer, 429: ErrorSerializer, 503: ErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        return Response(
            {
                "schema": {
                    "method": "POST",
                    "path": "/api/tools/suggest",
                    "description": "Suggest a tool that should be added to the organization's catalog. "
                    "Use this when GET /api/tools doesn't contain the tool you need.",
                    "body": body_schema(self.InputSerializer(), self.EXAMPLES),
                    "responses": {
                        "201": {
                            "description": "Suggestion submitted (or support added to existing)",
                            "example": {
                                "suggestion_id": "uuid",
                                "status": "pending",
                                "existing": False,
                                "message": SUGGESTED_MESSAGE,
                            },
                        },
                        "409 (existing tool)": {
                            "description": "The tool already exists in the catalog. "
                            "Use POST /api/tools/{tool_id}/request instead.",
                        },
                        "409 (cooldown)": {
                            "description": "This suggestion was recently dismissed. "
                            "Wait for the cooldown to expire (default: 24 hours).",
                        },
                    },
                }
            }
        )

    @extend_schema(
        operation_id="tools_suggest", request=InputSerializer, responses={201: OutputSerializer, **ERRORS}
    )
    def post(self, request: Request) -> Response:
        return Response(suggestion_submit(agent=self.agent, data=request.data), status=201)


def suggestion_submit(*, agent: Agent, data: Any) -> dict[str, Any]:
    """``POST /api/tools/suggest``, shared with the MCP tool ``suggest_tool``.

    ``data`` is the parsed JSON object (REST) or the tool arguments (MCP).
    """
    serializer = ToolSuggestApi.InputSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    result = tool_suggest(
        agent=agent,
        name=serializer.validated_data["name"],
        url=serializer.validated_data.get("url", ""),
        reason=serializer.validated_data["reason"],
    )
    return {
        "suggestion_id": str(result.suggestion.id),
        "status": result.suggestion.status,
        "existing": result.existing,
        "message": result.message,
    }
