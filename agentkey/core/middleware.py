"""Request-scoped middleware shared by every surface."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import uuid
from collections.abc import Callable

from csp.constants import HEADER as CSP_HEADER
from csp.middleware import CSPMiddleware
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from agentkey.core import context, errors, ratelimit

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def client_ip(request: HttpRequest) -> str | None:
    """The client address, trusting exactly ``TRUSTED_PROXY_COUNT`` proxies.

    Each trusted proxy appends the address it received the request from to
    X-Forwarded-For, so the client is the entry ``count`` places from the
    right. Anything further left was written by the client and is ignored:
    that is what keeps a spoofed header from dodging the per-IP limit.
    """
    remote = request.META.get("REMOTE_ADDR") or None
    count: int = settings.TRUSTED_PROXY_COUNT
    if count > 0:
        hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
        if len(hops) >= count:
            candidate = hops[-count]
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                return remote
    return remote


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware, except that a response which already carries its policy keeps it
    and costs nothing: the agent API sets a constant one (``agentkey.core.api.API_CSP``), where
    building the pages' policy for every call took a measurable share of a vend (issue #7)."""

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if CSP_HEADER in response:
            return response
        return super().process_response(request, response)


class RequestContextMiddleware:
    """Assigns a request id, resolves the client address, echoes X-Request-ID."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        ctx = context.RequestContext(request_id=request_id, ip=client_ip(request))
        request.agentkey_context = ctx  # type: ignore[attr-defined]
        token = context.bind(ctx)
        try:
            response = self.get_response(request)
        finally:
            context.reset(token)
        response["X-Request-ID"] = request_id
        return response


class ConsoleRateLimitMiddleware:
    """The ``admin`` tier (DESIGN §4) on every human write: admin, sign-in, dashboard.

    A signed-in person is counted under their user id. An anonymous POST (a
    sign-in attempt) is counted twice, under the client address and under the
    username it tries, so neither a spray across accounts from one address
    nor a slow attack on one account from many addresses goes unchecked. The
    agent API, MCP and the tool proxy have their own tiers and are skipped here
    (the proxy's body is the upstream's, never parsed as a form).
    """

    USERNAME_FIELDS = ("username", "login", "email")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and not request.path.startswith(("/api/", "/mcp", "/proxy/")):
            try:
                for key in self._keys(request):
                    ratelimit.hit(request, tier="admin", key=key)
            except errors.RateLimited as exc:
                response = HttpResponse(
                    f"Too many attempts. Wait {exc.retry_after} seconds and try again.\n",
                    status=429,
                    content_type="text/plain; charset=utf-8",
                )
                response["Retry-After"] = str(exc.retry_after)
                return response
            except errors.Unavailable:
                return HttpResponse(
                    "The service is temporarily unavailable. Try again in a few seconds.\n",
                    status=503,
                    content_type="text/plain; charset=utf-8",
                )
        return self.get_response(request)

    def _keys(self, request: HttpRequest) -> list[str]:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return [f"user:{user.pk}"]
        keys = [f"ip:{client_ip(request)}"]
        for field in self.USERNAME_FIELDS:
            value = request.POST.get(field, "")
            if value:
                digest = hashlib.sha256(value.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()
                keys.append(f"login:{digest}")
                break
        return keys
