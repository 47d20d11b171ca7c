"""``/mcp`` in front of Django: agent-key authentication, then the SDK's ASGI app over a2wsgi.

gunicorn (gthread) and runserver speak WSGI. The MCP SDK's streamable-HTTP
transport is an ASGI app, so this module runs it on one asyncio event loop per
process (a daemon thread, started on the first ``/mcp`` request, i.e. after
gunicorn forks) and bridges each WSGI request to it with a2wsgi. Every other
path goes straight to Django's WSGI handler: the REST vend pays nothing.

The transport is stateless (no ``Mcp-Session-Id``; each POST is served on its
own), so any worker of any process can answer any request, and JSON responses
(no SSE stream is held open). Before the SDK sees a byte, the request passes
the same gates as the REST API: the Host check, the pre-auth rate limit per
client address, the browser-Origin refusal and the agent key
(:func:`accounts.services.agent_authenticate`: unknown, rotated-out or expired
key, suspended agent). A refusal is the REST error body, not JSON-RPC.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from a2wsgi import ASGIMiddleware
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.db import close_old_connections
from mcp.server.transport_security import TransportSecuritySettings

from accounts.api import BROWSER_ORIGIN_REFUSED
from accounts.authfailures import agent_authenticate_counted
from accounts.models import Agent
from accounts.services import MISSING_BEARER
from agentkey.core import context, errors, ratelimit
from agentkey.core.api import as_domain_error
from agentkey.core.errors import DomainError, Message
from agentkey.core.middleware import client_ip
from agentkey.mcp.server import CALLER_KEY, Caller, mcp_server

PATH = "/mcp"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")  # as RequestContextMiddleware
#: The REST body cap plus room for the JSON-RPC envelope around the tool arguments.
ENVELOPE_BYTES = 8192

BAD_HOST = Message(
    "Invalid Host header.",
    "Call AgentKey at the address its operator configured (ALLOWED_HOSTS).",
)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Bridge:
    """The SDK's app on this process's event loop, with its session manager running."""

    def __init__(self) -> None:
        body_limit = int(settings.AGENTKEY_MAX_BODY_BYTES) + ENVELOPE_BYTES
        app = mcp_server.streamable_http_app(
            streamable_http_path=PATH,
            stateless_http=True,
            json_response=True,
            max_request_body_size=body_limit,
            # Host and Origin are checked by the mount with Django's rules, before authentication.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        manager = mcp_server.session_manager
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="agentkey-mcp-loop", daemon=True).start()
        started: concurrent.futures.Future[None] = concurrent.futures.Future()

        async def run_manager() -> None:
            # a2wsgi sends no ASGI lifespan events, so the manager's task group is held open here.
            async with manager.run():
                started.set_result(None)
                await asyncio.Event().wait()

        self._runner = asyncio.run_coroutine_threadsafe(run_manager(), loop)
        started.result(timeout=30)
        self.wsgi = ASGIMiddleware(app, loop=loop)  # type: ignore[arg-type]


class McpMount:
    """WSGI application: ``/mcp`` to the MCP bridge, everything else to ``django_app``."""

    def __init__(self, django_app: WSGIApp) -> None:
        self.django_app = django_app
        self._bridge: _Bridge | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") not in (PATH, PATH + "/"):
            return self.django_app(environ, start_response)
        return self.serve(environ, start_response)

    def bridge(self) -> _Bridge:
        with self._lock:
            if self._bridge is None:
                self._bridge = _Bridge()
            return self._bridge

    def serve(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        environ["PATH_INFO"] = PATH
        environ.pop(CALLER_KEY, None)
        request = WSGIRequest(environ)
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        ctx = context.RequestContext(request_id=request_id, ip=client_ip(request))
        token = context.bind(ctx)
        close_old_connections()
        state: ratelimit.RateLimitState | None = None
        try:
            try:
                request.get_host()
            except DisallowedHost:
                return _refuse(start_response, errors.ValidationFailed(BAD_HOST), request_id, None)
            state = ratelimit.hit(request, tier="preauth", key=f"ip:{ctx.ip}")
            agent = self._authenticate(request)
        except Exception as exc:
            err = as_domain_error(exc)
            if err is None:
                raise
            state = getattr(err, "ratelimit_state", None) or state
            return _refuse(start_response, err, request_id, state)
        finally:
            close_old_connections()
            context.reset(token)
        environ[CALLER_KEY] = Caller(agent=agent, request=request, context=ctx)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, ("X-Request-ID", request_id)], exc_info)

        # a2wsgi types the environ as its own TypedDict; this is the same PEP 3333 dict.
        return self.bridge().wsgi(environ, start)  # type: ignore[arg-type]

    def _authenticate(self, request: WSGIRequest) -> Agent:
        origin = request.META.get("HTTP_ORIGIN")
        if origin is not None and origin not in settings.AGENT_CORS_ORIGINS:
            raise errors.Forbidden(BROWSER_ORIGIN_REFUSED)
        length = request.META.get("CONTENT_LENGTH") or "0"
        limit = int(settings.AGENTKEY_MAX_BODY_BYTES) + ENVELOPE_BYTES
        if not length.isdigit() or int(length) > limit:
            raise errors.PayloadTooLarge(errors.PAYLOAD_TOO_LARGE.format(limit=limit))
        scheme, _, presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            raise errors.Unauthenticated(MISSING_BEARER)
        agent, _key = agent_authenticate_counted(token=presented)
        # The SDK answers a wrong Content-Type in plain text; refuse it here in the REST shape.
        content_type = request.META.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if request.method == "POST" and content_type != "application/json":
            raise errors.UnsupportedMediaType(errors.UNSUPPORTED_MEDIA_TYPE)
        return agent


def _refuse(
    start_response: StartResponse,
    err: DomainError,
    request_id: str,
    state: ratelimit.RateLimitState | None,
) -> list[bytes]:
    body = json.dumps(err.body(), ensure_ascii=False).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Request-ID", request_id),
    ]
    if isinstance(err, errors.Unauthenticated):
        headers.append(("WWW-Authenticate", 'Bearer realm="agentkey"'))
    if isinstance(err, errors.RateLimited):
        headers.append(("Retry-After", str(err.retry_after)))
    if isinstance(err, errors.Unavailable):
        headers.append(("Retry-After", "5"))
    if state is not None:
        headers.extend(state.headers().items())
    reason = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 413: "Payload Too Large"}
    reason |= {415: "Unsupported Media Type"}
    reason |= {429: "Too Many Requests", 503: "Service Unavailable"}
    start_response(f"{err.status} {reason.get(err.status, 'Error')}", headers)
    return [body]
