"""The tool proxy: ``/proxy/<tool id>/<path>`` (docs/proxy.md).

An agent calls a proxy-mode tool's API through AgentKey with its own key. The
grant is checked exactly as for the vend (``grants.services.credential_proxy_open``),
the credential is injected (a header or a query parameter), and the request is
forwarded to the tool's configured origin only, through the SSRF-checked client
of ``agentkey.core.http`` (address checked after DNS resolution and pinned,
redirects never followed). The response is streamed back with every form of the
credential removed. Each forwarded call is one committed ``credential.proxied``
audit row, written once the upstream has answered with its headers and before
any of its body is sent: if the row cannot be written the agent gets 503 and
nothing of the upstream body.
"""

from __future__ import annotations

import json
import logging
import re
import time
import unicodedata
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import quote, unquote, urljoin, urlsplit

from django.db import DatabaseError
from django.http import StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request

from accounts.api import AgentAPIView
from agentkey.core import http
from agentkey.core.errors import (
    UNAVAILABLE,
    Conflict,
    DomainError,
    Message,
    PayloadTooLarge,
    Unavailable,
    ValidationFailed,
)
from agentkey.core.redact import Redactor
from catalog.models import AuthType, InjectAs, Tool
from grants.services import ProxyAccess, credential_proxied_record, credential_proxy_open

logger = logging.getLogger("agentkey.proxy")

MAX_BODY = 10 * 1024 * 1024
MAX_TARGET = 8000  # path + query, in characters
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0  # seconds without a byte from the upstream

# RFC 9110 §7.6.1 hop-by-hop headers (and the legacy ones seen in the wild).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Never forwarded upstream: the agent's AgentKey key, its cookies, routing and framing we own,
# and what our own reverse proxy added about the agent.
REQUEST_DROPPED = HOP_BY_HOP | {
    "authorization",
    "cookie",
    "host",
    "content-length",
    "accept-encoding",
    "expect",
    "origin",
    "referer",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-real-ip",
    "x-request-id",
}
# Never sent back to the agent. The body is re-encoded (decoded, redacted), so its length and
# coding change; cookies would tie the agent to a session of the credential's owner.
RESPONSE_DROPPED = HOP_BY_HOP | {"set-cookie", "set-cookie2", "content-length", "content-encoding"}
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Percent-encodings left after one decoding: double-encoded separators, dots, @, % and controls.
_ENCODED_TRICK = re.compile(r"%(2f|5c|2e|40|25|0[0-9a-f]|1[0-9a-f]|7f)", re.IGNORECASE)
_PCHAR_SAFE = "/:@!$&'()*+,;=-._~"
_QUERY_SAFE = "=&;%+/?:@!$'()*,~-._[]"


class BadGateway(DomainError):
    status = 502


class GatewayTimeout(DomainError):
    status = 504


PATH_REFUSED = Message(
    "The proxy path is refused: it {reason}.",
    "Send only the path of the tool's API after /proxy/{tool_id}/, such as /proxy/{tool_id}/v1/items?limit=10. "
    "The proxy only ever calls the tool's configured origin.",
)
BODY_TOO_LARGE = Message(
    "The request body is larger than {limit} bytes.",
    "The proxy forwards bodies of at most {limit} bytes. Send less data per call.",
)
CREDENTIAL_NOT_INJECTABLE = Message(
    "The tool's credential cannot be sent in a header.",
    "A human admin must store a credential without line breaks or non-ASCII characters, "
    "or inject it as a query parameter.",
)
UPSTREAM_REFUSED = Message(
    "The tool's upstream address is refused: {reason}",
    "Tell a human admin: the tool's upstream origin no longer passes AgentKey's address checks.",
)
UPSTREAM_UNREACHABLE = Message(
    "The tool's API could not be reached: {reason}",
    "Retry in a few seconds. If it persists, tell a human admin; the call was audited.",
)
UPSTREAM_TIMED_OUT = Message(
    "The tool's API did not answer in time: {reason}",
    "Retry later, or ask for less data per call.",
)
REDIRECT_REFUSED = Message(
    "The tool's API redirected to {target}, outside its origin {origin}; the proxy does not follow it.",
    "The proxy only calls {origin}. If the API moved, ask a human admin to update the tool's upstream origin.",
)
ENCODING_REFUSED = Message(
    "The tool's API answered with a content encoding the proxy cannot inspect ({coding}).",
    "Retry; the proxy asks for uncompressed responses. If it persists, tell a human operator.",
)


# --- the request ------------------------------------------------------------------------------------


def _path_problem(path: str) -> str | None:
    if "\\" in path:
        return "contains a backslash"
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return "contains control characters"
    if path.startswith("/"):
        return "starts with //, which would name another host"
    segments = path.split("/")
    for index, segment in enumerate(segments):
        if segment == "" and index != len(segments) - 1:
            return "has an empty segment (//)"
        if segment in (".", ".."):
            return "contains a . or .. segment"
    if ":" in segments[0]:
        return "starts like an absolute URL (scheme:)"
    if "@" in segments[0]:
        return "has @ in its first segment"
    if _ENCODED_TRICK.search(path):
        return "contains an encoded separator, dot, @, % or control character"
    return None


def upstream_path(path: str, tool_id: uuid.UUID) -> str:
    """The path to request from the origin, percent-encoded; refuses anything that could leave it.

    ``path`` arrives decoded once (WSGI). A character that compatibility-normalizes
    to a separator (a fullwidth solidus) is refused as well, in case the upstream
    normalizes Unicode.
    """
    problem = _path_problem(path) or _path_problem(unicodedata.normalize("NFKC", path))
    if problem is None and len(path) > MAX_TARGET:
        problem = "is too long"
    if problem is not None:
        raise ValidationFailed(PATH_REFUSED.format(reason=problem, tool_id=tool_id))
    return "/" + quote(path, safe=_PCHAR_SAFE)


def upstream_query(query: str, access: ProxyAccess, injected: str | None) -> str:
    """The agent's query string as sent; in query mode the credential parameter replaces any of the same name."""
    if not query.isascii() or any(ord(c) <= 32 or ord(c) == 127 for c in query):
        query = quote(query, safe=_QUERY_SAFE)
    tool = access.tool
    if tool.inject_as != InjectAs.QUERY or injected is None:
        return query
    kept = [p for p in query.split("&") if p and unquote(p.split("=", 1)[0]) != tool.inject_name]
    kept.append(f"{quote(tool.inject_name, safe='')}={quote(injected, safe='')}")
    return "&".join(kept)


def injected_value(access: ProxyAccess) -> str:
    """What is injected: the stored credential; for an OAuth token stored as JSON, its access_token."""
    credential = access.credential
    if access.tool.auth_type == AuthType.OAUTH_TOKEN:
        try:
            parsed = json.loads(credential)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("access_token"), str):
            return str(parsed["access_token"])
    return credential


def secrets_of(access: ProxyAccess) -> list[str]:
    """Everything to strip from the response: the stored value and, for JSON, each string in it."""
    values = [access.credential, injected_value(access)]
    try:
        parsed = json.loads(access.credential)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        values += [v for v in parsed.values() if isinstance(v, str) and len(v) >= 8]
    return values


def forwarded_headers(request: Request, access: ProxyAccess, injected: str) -> dict[str, str]:
    tool = access.tool
    headers: dict[str, str] = {}
    for key, value in request.META.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").title()
        elif key == "CONTENT_TYPE" and value:
            name = "Content-Type"
        else:
            continue
        lower = name.lower()
        if lower in REQUEST_DROPPED or lower == tool.inject_name.lower():
            continue
        headers[name] = str(value)
    for name in request.META.get("HTTP_CONNECTION", "").split(","):
        headers.pop(name.strip().title(), None)
    headers["Accept-Encoding"] = "identity"
    if tool.inject_as == InjectAs.HEADER:
        value = tool.inject_template.replace("{credential}", injected)
        if not value.isascii() or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise Conflict(CREDENTIAL_NOT_INJECTABLE)
        headers[tool.inject_name] = value
    return headers


def read_body(request: Request, tool_id: uuid.UUID) -> bytes | None:
    raw = request._request
    declared = raw.META.get("CONTENT_LENGTH") or ""
    if declared.strip().isdigit() and int(declared) > MAX_BODY:
        raise PayloadTooLarge(BODY_TOO_LARGE.format(limit=MAX_BODY))
    body = raw.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise PayloadTooLarge(BODY_TOO_LARGE.format(limit=MAX_BODY))
    return body if body or request.method in ("POST", "PUT", "PATCH") else None


# --- the response -----------------------------------------------------------------------------------


def _same_origin(url: str, origin: str) -> bool:
    try:
        a, b = urlsplit(url), urlsplit(origin)
        ports = (
            a.port or (443 if a.scheme == "https" else 80),
            b.port or (443 if b.scheme == "https" else 80),
        )
    except ValueError:
        return False
    return (
        a.scheme.lower() == b.scheme.lower()
        and (a.hostname or "").lower() == (b.hostname or "").lower()
        and ports[0] == ports[1]
        and a.username is None
        and a.password is None
    )


def rewrite_location(location: str, *, tool: Tool, requested: str) -> str | None:
    """A same-origin Location as the matching /proxy/ URL; None when it points elsewhere."""
    absolute = urljoin(tool.upstream_origin + requested, location.strip())
    if not _same_origin(absolute, tool.upstream_origin):
        return None
    parts = urlsplit(absolute)
    rewritten = tool.proxy_path + parts.path.lstrip("/")
    if parts.query:
        rewritten += "?" + parts.query
    if parts.fragment:
        rewritten += "#" + parts.fragment
    return rewritten


def response_headers(upstream: http.Streamed, redactor: Redactor) -> dict[str, str]:
    """Upstream headers minus hop-by-hop, cookies and framing, with the credential removed.

    The upstream's own rate-limit headers are renamed X-Upstream-RateLimit-*: the
    X-RateLimit-* names carry AgentKey's limits on every agent response.
    """
    listed = {n.strip().lower() for n in (upstream.header("connection") or "").split(",")}
    merged: dict[str, list[str]] = {}
    for name, value in upstream.headers:
        if name in RESPONSE_DROPPED or name in listed or redactor.contains(name):
            continue
        if name in ("x-request-id", "location"):
            continue
        cleaned = redactor.text(value)
        if "\r" in cleaned or "\n" in cleaned:
            continue
        renamed = name
        if name.startswith("x-ratelimit-"):
            renamed = "x-upstream-ratelimit-" + name[len("x-ratelimit-") :]
        merged.setdefault(renamed, []).append(cleaned)
    return {name: ", ".join(values) for name, values in merged.items()}


def _stream(upstream: http.Streamed, redactor: Redactor, tool_id: uuid.UUID) -> Iterator[bytes]:
    try:
        yield from redactor.stream(upstream.chunks())
    except http.FetchFailed as exc:
        # The status line is gone already; the agent sees a truncated body.
        logger.warning("proxy: upstream body of tool %s broke off: %s", tool_id, exc.message.error)
    finally:
        upstream.close()


# --- the view ---------------------------------------------------------------------------------------


class _PassThroughRenderer(BaseRenderer):
    media_type = "*/*"
    format = "proxy"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> Any:
        return data


class _AnyAccept(BaseContentNegotiation):
    """The agent's Accept header is for the upstream: never answer 406 on its account."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        return renderers[0], renderers[0].media_type


class ProxyApi(AgentAPIView):
    """``/proxy/<tool id>/<path>`` in any of GET, POST, PUT, PATCH, DELETE, HEAD."""

    ratelimit_tier = "credential"
    path_ids: ClassVar[dict[str, str]] = {"tool_id": "Tool ID"}
    refuse_foreign_origins = True
    http_method_names = ["get", "post", "put", "patch", "delete", "head"]
    content_negotiation_class = _AnyAccept

    @property
    def default_response_headers(self) -> dict[str, str]:
        # DRF's Allow/Vary would overwrite the upstream's own headers of the same name.
        return {}

    @extend_schema(exclude=True)
    def get(self, request: Request, tool_id: uuid.UUID, path: str = "") -> StreamingHttpResponse:
        return self.forward(request, tool_id, path)

    post = put = patch = delete = head = get

    def forward(self, request: Request, tool_id: uuid.UUID, path: str) -> StreamingHttpResponse:
        method = str(request.method)
        requested = upstream_path(path, tool_id)
        access = credential_proxy_open(agent=self.agent, tool_id=tool_id)
        tool = access.tool
        injected = injected_value(access)
        headers = forwarded_headers(request, access, injected)
        query = upstream_query(request.META.get("QUERY_STRING", ""), access, injected)
        body = read_body(request, tool_id)
        try:
            target = http.check_url(tool.upstream_origin + "/", https_only=True)
        except http.UnsafeURL as exc:
            raise BadGateway(UPSTREAM_REFUSED.format(reason=exc.error)) from None
        started = time.monotonic()
        try:
            upstream = http.open_stream(
                method,
                target,
                path=requested + (f"?{query}" if query else ""),
                headers=headers,
                body=body,
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
            )
        except http.FetchFailed as exc:
            timed_out = exc.message.hint == http.TIMED_OUT.hint
            self._record(
                access,
                method=method,
                requested=requested,
                status=None,
                started=started,
                outcome="timeout" if timed_out else "unreachable",
            )
            refusal = UPSTREAM_TIMED_OUT if timed_out else UPSTREAM_UNREACHABLE
            raise (GatewayTimeout if timed_out else BadGateway)(
                refusal.format(reason=exc.message.error)
            ) from None
        try:
            return self._answer(access, method, requested, upstream, started)
        except BaseException:
            upstream.close()
            raise

    def _answer(
        self, access: ProxyAccess, method: str, requested: str, upstream: http.Streamed, started: float
    ) -> StreamingHttpResponse:
        tool = access.tool
        redactor = Redactor(secrets_of(access))
        location = upstream.header("location")
        rewritten = rewrite_location(location, tool=tool, requested=requested) if location else None
        coding = (upstream.header("content-encoding") or "").strip().lower()
        outcome = "forwarded"
        if upstream.status in REDIRECTS and location and rewritten is None:
            outcome = "redirect_refused"
        elif coding not in http.DECODABLE:
            outcome = "encoding_refused"
        self._record(
            access,
            method=method,
            requested=requested,
            status=upstream.status,
            started=started,
            outcome=outcome,
        )
        if outcome == "redirect_refused":
            assert location is not None  # noqa: S101  (checked above)
            shown = redactor.text(location.strip())[:200]
            raise BadGateway(REDIRECT_REFUSED.format(target=shown, origin=tool.upstream_origin))
        if outcome == "encoding_refused":
            raise BadGateway(ENCODING_REFUSED.format(coding=redactor.text(coding)[:40]))
        response = StreamingHttpResponse(_stream(upstream, redactor, tool.id), status=upstream.status)
        del response["Content-Type"]
        for name, value in response_headers(upstream, redactor).items():
            response[name] = value
        if location:
            response["Location"] = redactor.text(rewritten if rewritten is not None else location.strip())
        return response

    def _record(
        self,
        access: ProxyAccess,
        *,
        method: str,
        requested: str,
        status: int | None,
        started: float,
        outcome: str,
    ) -> None:
        """Fail closed: no committed audit row, no upstream body (503)."""
        try:
            credential_proxied_record(
                agent=self.agent,
                access=access,
                method=method,
                path=requested,
                status=status,
                duration_ms=int((time.monotonic() - started) * 1000),
                outcome=outcome,
            )
        except DatabaseError as exc:
            logger.error(
                "proxy: audit row not written, call refused (tool %s, %s %s, upstream status %s): %s",
                access.tool.id,
                method,
                requested[:200],
                status,
                type(exc).__name__,
            )
            raise Unavailable(UNAVAILABLE) from None
