"""DRF plumbing shared by every API: the error shape, strict JSON, rate limits.

Views never build error JSON by hand: they raise, and :func:`exception_handler`
renders ``{"error", "hint", "details"?}`` with the right status and headers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import redis.exceptions
from django.core.exceptions import SuspiciousOperation
from django.db import DatabaseError, DataError
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agentkey.core import errors, ratelimit
from agentkey.core.errors import DomainError, FieldError, Message

logger = logging.getLogger("agentkey.api")

AUTHENTICATION_REQUIRED = Message(
    "Authentication required.",
    "Send your agent key as the header Authorization: Bearer sk_agent_... "
    "If you have no key, ask a human to create an agent for you in the AgentKey dashboard.",
)
FORBIDDEN = Message("You are not allowed to do this.", "Ask a human administrator for access.")
BAD_REQUEST = Message(
    "The request could not be read.",
    "Check the Host header, the query string (at most 1,000 parameters) and the request size, then retry.",
)


# --- errors ----------------------------------------------------------------------------------------


def _flatten(detail: Any, prefix: str = "") -> list[FieldError]:
    if isinstance(detail, Mapping):
        out: list[FieldError] = []
        for key, value in detail.items():
            name = "input" if key == "non_field_errors" else str(key)
            out.extend(_flatten(value, f"{prefix}.{name}" if prefix else name))
        return out
    if isinstance(detail, Sequence) and not isinstance(detail, str):
        out = []
        for item in detail:
            out.extend(_flatten(item, prefix))
        return out
    return [FieldError(field=prefix or "input", message=str(detail))]


def as_domain_error(exc: BaseException) -> DomainError | None:
    """Translate framework and infrastructure exceptions into domain errors."""
    if isinstance(exc, DomainError):
        return exc
    if isinstance(exc, drf.ValidationError):
        return errors.ValidationFailed.from_details(_flatten(exc.detail))
    if isinstance(exc, drf.ParseError):
        return errors.ValidationFailed(errors.MALFORMED_JSON)
    if isinstance(exc, drf.UnsupportedMediaType):
        return errors.UnsupportedMediaType(errors.UNSUPPORTED_MEDIA_TYPE)
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        return errors.Unauthenticated(AUTHENTICATION_REQUIRED)
    if isinstance(exc, drf.PermissionDenied):
        return errors.Forbidden(FORBIDDEN)
    if isinstance(exc, drf.NotFound | Http404):
        return errors.NotFound(errors.NOT_FOUND)
    if isinstance(exc, drf.MethodNotAllowed):
        return errors.MethodNotAllowed(
            errors.METHOD_NOT_ALLOWED.format(method=exc.args[0], allowed="see Allow")
        )
    if isinstance(exc, drf.Throttled):
        wait = int(getattr(exc, "wait", None) or 1)
        return errors.RateLimited(
            errors.RATE_LIMITED.format(tier="these", retry_after=wait), retry_after=wait
        )
    if isinstance(exc, SuspiciousOperation):
        # Too many query parameters, a malformed Host and the like: Django's own 400.
        return errors.ValidationFailed(BAD_REQUEST)
    if isinstance(exc, DataError):
        # A value passed validation but broke a database limit: a validation gap,
        # and retrying will not help, so it is the client's 400, not a 503.
        logger.error("value refused by the database: %s", type(exc).__name__)
        return errors.ValidationFailed(errors.UNSTORABLE_VALUE)
    if isinstance(exc, DatabaseError | redis.exceptions.RedisError | errors.CryptoError):
        # Infrastructure trouble: refuse (fail closed) rather than guess. The
        # exception text is logged for the operator, never sent to the client.
        logger.error("request failed closed: %s: %s", type(exc).__name__, exc)
        return errors.Unavailable(errors.UNAVAILABLE)
    return None


def error_response(err: DomainError) -> Response:
    response = Response(err.body(), status=err.status)
    if isinstance(err, errors.RateLimited):
        response["Retry-After"] = str(err.retry_after)
    if isinstance(err, errors.Unauthenticated):
        response["WWW-Authenticate"] = 'Bearer realm="agentkey"'
    if isinstance(err, errors.Unavailable):
        response["Retry-After"] = "5"
    return response


def exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    err = as_domain_error(exc)
    if err is None:
        return None  # a genuine bug: Django's 500 handler renders the error shape
    response = error_response(err)
    if isinstance(err, errors.MethodNotAllowed) and isinstance(exc, drf.MethodNotAllowed):
        view = context.get("view")
        if view is not None:
            allowed = ", ".join(view.allowed_methods)
            response.data = errors.MethodNotAllowed(
                errors.METHOD_NOT_ALLOWED.format(method=exc.args[0], allowed=allowed)
            ).body()
    return response


class TextField(serializers.CharField):
    """A JSON string, and only that.

    DRF's CharField turns 910 or true into text; the OpenAPI document says
    ``type: string``, and the fuzzer holds the API to it.
    """

    default_error_messages = {"invalid": "Not a valid string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        # The limit holds for the text as sent: CharField trims first, and str.strip() also
        # drops characters (NBSP, other Unicode spaces) that the schema's maxLength counts.
        if self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return str(super().to_internal_value(data))


class ErrorSerializer(serializers.Serializer[Any]):
    """The one error shape (documentation only)."""

    error = serializers.CharField()
    hint = serializers.CharField()
    details = serializers.ListField(child=serializers.DictField(), required=False)


class SchemaDocumentSerializer(serializers.Serializer[Any]):
    """Body of the schema-discovery GETs (documentation only)."""

    schema = serializers.DictField()


# --- views -----------------------------------------------------------------------------------------


class JSONOnlyNegotiation(DefaultContentNegotiation):
    """The agent API always answers JSON: an Accept header it cannot honour is no reason for a 406."""

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        return renderers[0], renderers[0].media_type


#: The agent API's Content-Security-Policy: its answers are JSON (or a proxied upstream's body),
#: never a page, so nothing may load, run or frame them. A constant: no per-response building.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


class RateLimitedAPIView(APIView):
    """An API view counted against the pre-auth tier (per client IP) and then
    against ``ratelimit_tier`` for the authenticated principal.

    Every response, errors included, carries the X-RateLimit-* headers of the
    tier that applied last.
    """

    ratelimit_tier: ClassVar[str | None] = None
    content_negotiation_class: type[BaseContentNegotiation] = JSONOnlyNegotiation

    def ratelimit_identity(self, request: Request) -> str | None:
        """The key the tier is counted under (the authenticated principal)."""
        return None

    def before_authentication(self, request: Request) -> None:
        """Checks that need no identity (path ids, Origin); run after the pre-auth count."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        ip = getattr(request._request, "agentkey_context", None)
        address = ip.ip if ip is not None else request.META.get("REMOTE_ADDR")
        self.ratelimit_state = ratelimit.hit(request._request, tier="preauth", key=f"ip:{address}")
        self.before_authentication(request)
        super().initial(request, *args, **kwargs)
        identity = self.ratelimit_identity(request)
        if self.ratelimit_tier is not None and identity is not None:
            self.ratelimit_state = ratelimit.hit(request._request, tier=self.ratelimit_tier, key=identity)

    def handle_exception(self, exc: Exception) -> Response:
        state = getattr(exc, "ratelimit_state", None)
        if state is not None:
            self.ratelimit_state = state
        return super().handle_exception(exc)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = API_CSP
        state: ratelimit.RateLimitState | None = getattr(self, "ratelimit_state", None)
        if state is not None:
            for name, value in state.headers().items():
                response[name] = value
        return response


# --- schema discovery ------------------------------------------------------------------------------


def body_schema(serializer: serializers.Serializer[Any], examples: Mapping[str, Any]) -> dict[str, Any]:
    """The ``body`` part of a schema-discovery document, derived from the input serializer.

    Served by the unauthenticated GET on each agent POST endpoint so an agent
    can discover the body and correct itself: one source of truth with the
    validation that actually runs. Field shape as in the original AgentKey:
    ``{"type", "required", "min_length"?, "max_length"?, "enum"?, "description", "example"}``.
    """
    body: dict[str, Any] = {}
    for name, field in serializer.fields.items():
        if field.read_only:
            continue
        prop: dict[str, Any] = {"type": "string", "required": bool(field.required)}
        if isinstance(field, serializers.ChoiceField):
            prop["enum"] = list(field.choices)
        if isinstance(field, serializers.CharField):
            if field.min_length is not None:
                prop["min_length"] = field.min_length
            if field.max_length is not None:
                prop["max_length"] = field.max_length
        if field.help_text:
            prop["description"] = str(field.help_text)
        if name in examples:
            prop["example"] = examples[name]
        body[name] = prop
    return body
