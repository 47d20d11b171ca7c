"""Agent authentication for DRF and the base view of every agent endpoint."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.authfailures import agent_authenticate_counted
from accounts.models import Agent, AgentKey
from accounts.services import MISSING_BEARER
from agentkey.core.api import RateLimitedAPIView
from agentkey.core.errors import Forbidden, Message, NotFound, Unauthenticated

INVALID_ID = Message(
    "{label} is not a valid identifier.",
    "Check the {lower} value. Use GET /api/tools to find valid tool IDs.",
)
BROWSER_ORIGIN_REFUSED = Message(
    "Cross-origin browser requests are not allowed.",
    "Agent API calls should be made from a server or CLI, not a browser. "
    "Unset the Origin header or add the origin to AGENT_CORS_ORIGINS.",
)


class AgentKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer sk_agent_...``."""

    def authenticate(self, request: Request) -> tuple[Agent, AgentKey]:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated(MISSING_BEARER)
        return agent_authenticate_counted(token=token)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="agentkey"'


class AgentKeySchema(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Documents the agent key as an HTTP bearer scheme in the OpenAPI document."""

    target_class = AgentKeyAuthentication
    name = "agentKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return dict(
            build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Bearer")  # noqa: S106
        )


class IsAgent(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        principal: object = request.user
        return isinstance(principal, Agent)


class AgentAPIView(RateLimitedAPIView):
    """Base of every agent endpoint: agent key auth, per-agent rate-limit tier.

    Subclasses set ``ratelimit_tier``; GET on a POST endpoint (schema
    discovery) is open and counted only against the pre-auth tier.
    """

    authentication_classes = [AgentKeyAuthentication]
    permission_classes = [IsAgent]
    public_methods: ClassVar[frozenset[str]] = frozenset()
    #: URL kwargs that must be UUIDs; anything else is 404 before authentication.
    path_ids: ClassVar[dict[str, str]] = {}
    #: Refuse browser requests from origins not in AGENT_CORS_ORIGINS (credential fetches).
    refuse_foreign_origins: ClassVar[bool] = False

    def before_authentication(self, request: Request) -> None:
        if self.refuse_foreign_origins:
            origin = request.META.get("HTTP_ORIGIN")
            if origin is not None and origin not in settings.AGENT_CORS_ORIGINS:
                raise Forbidden(BROWSER_ORIGIN_REFUSED)
        for name, label in self.path_ids.items():
            try:
                self.kwargs[name] = uuid.UUID(str(self.kwargs[name]))
            except ValueError:
                raise NotFound(INVALID_ID.format(label=label, lower=label.lower())) from None

    def get_authenticators(self) -> list[BaseAuthentication]:
        if self.request is not None and self.request.method in self.public_methods:
            return []
        return super().get_authenticators()

    def get_permissions(self) -> Sequence[Any]:
        if self.request.method in self.public_methods:
            return []
        return super().get_permissions()

    def ratelimit_identity(self, request: Request) -> str | None:
        principal: object = request.user
        return f"agent:{principal.id}" if isinstance(principal, Agent) else None

    @property
    def agent(self) -> Agent:
        principal: object = self.request.user
        assert isinstance(principal, Agent)  # noqa: S101  (guaranteed by IsAgent)
        return principal
