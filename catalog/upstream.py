"""Proxy-mode settings of a tool: the upstream origin and how the credential is injected.

Validated here, when an admin saves them, so the proxy (``grants.proxy``) only
ever sees an origin of the form ``https://host[:port]`` that passed the SSRF
rules of ``agentkey.core.http.check_url``. The proxy checks the address again
on every call (DNS may change), this check gives the admin a clear message early.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from agentkey.core import http
from agentkey.core.errors import FieldError, Message, ValidationFailed
from catalog.models import AccessMode, InjectAs

ORIGIN_INVALID = Message(
    "The upstream origin must be https://host or https://host:port, nothing more.",
    "Enter only the scheme, host and optional port of the API (such as https://api.linear.app): "
    "no path, query, fragment or user name. Agents add the path when they call the proxy.",
)
ORIGIN_REQUIRED = Message(
    "A proxied tool needs an upstream origin.",
    "Enter the API's origin, such as https://api.linear.app, or choose vend mode.",
)
ORIGIN_REFUSED = Message(
    "The upstream origin is refused: {reason}",
    "Use the API's public https:// origin. Private, loopback and metadata addresses cannot be proxied to.",
)
HEADER_NAME_INVALID = Message(
    "{name!r} is not a header AgentKey can set.",
    "Use a header name of letters, digits and dashes, such as Authorization or X-Api-Key "
    "(not Host, Cookie, Content-Length or a hop-by-hop header).",
)
QUERY_NAME_INVALID = Message(
    "{name!r} is not a valid query parameter name.",
    "Use letters, digits, dots, dashes or underscores, such as api_key or access_token.",
)
TEMPLATE_INVALID = Message(
    "The header value template must contain {credential} exactly once and nothing else in braces.",
    "Use a template such as Bearer {credential}, Token {credential} or just {credential}.",
)

PLACEHOLDER = "{credential}"
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
_QUERY_NAME = re.compile(r"^[A-Za-z0-9._~\[\]-]{1,100}$")
# Headers the proxy owns or never forwards: setting them would break framing or routing.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "cookie",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "accept-encoding",
    }
)


def _invalid(field: str, message: Message) -> ValidationFailed:
    return ValidationFailed(message, details=[FieldError(field, message.error)])


def clean_origin(value: str) -> str:
    """``https://host[:port]``, lowercased, default port dropped; refused unless it passes check_url."""
    raw = value.strip()
    if not raw:
        raise _invalid("upstream_origin", ORIGIN_REQUIRED)
    if len(raw) > 300 or any(c.isspace() or ord(c) < 32 for c in raw) or "\\" in raw:
        raise _invalid("upstream_origin", ORIGIN_INVALID)
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise _invalid("upstream_origin", ORIGIN_INVALID) from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if (
        scheme not in ("http", "https")
        or not host
        or "@" in parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or raw.endswith(("?", "#"))
    ):
        raise _invalid("upstream_origin", ORIGIN_INVALID)
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise _invalid("upstream_origin", ORIGIN_INVALID) from None
    if ":" in ascii_host:
        ascii_host = f"[{ascii_host}]"
    default = 443 if scheme == "https" else 80
    origin = f"{scheme}://{ascii_host}" + (f":{port}" if port is not None and port != default else "")
    try:
        http.check_url(origin + "/", https_only=True)
    except http.UnsafeURL as exc:
        raise _invalid("upstream_origin", ORIGIN_REFUSED.format(reason=exc.error)) from None
    return origin


@dataclass(frozen=True)
class Injection:
    inject_as: str
    name: str
    template: str


def clean_injection(*, inject_as: str, name: str, template: str) -> Injection:
    """Check how the credential is injected; the template is used only for headers."""
    name = name.strip()
    if inject_as == InjectAs.HEADER:
        if not _TOKEN.match(name) or name.lower() in RESERVED_HEADERS:
            raise _invalid("inject_name", HEADER_NAME_INVALID.format(name=name[:100]))
        template = template.strip()
        rest = template.replace(PLACEHOLDER, "", 1)
        if (
            template.count(PLACEHOLDER) != 1
            or "{" in rest
            or "}" in rest
            or len(template) > 200
            or any(ord(c) < 32 or ord(c) == 127 for c in template)
        ):
            raise _invalid("inject_template", TEMPLATE_INVALID)
        return Injection(inject_as=inject_as, name=name, template=template)
    if inject_as == InjectAs.QUERY:
        if not _QUERY_NAME.match(name):
            raise _invalid("inject_name", QUERY_NAME_INVALID.format(name=name[:100]))
        return Injection(inject_as=inject_as, name=name, template=template.strip() or PLACEHOLDER)
    message = Message("Choose header or query.", "Inject the credential as a header or a query parameter.")
    raise _invalid("inject_as", message)


ACCESS_MODE_INVALID = Message("Choose vend or proxy.", "Pick how agents use this tool's credential.")


def check_access_mode(value: str) -> str:
    if value not in AccessMode.values:
        raise _invalid("access_mode", ACCESS_MODE_INVALID)
    return value
