"""How tool names and URLs are compared (the original AgentKey's rules)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")

NAME_LIMIT = 120
URL_LIMIT = 500
DOMAIN_LIMIT = 253


def normalize_text(value: str) -> str:
    """Lowercase, every run of non-[a-z0-9] becomes one space, trimmed: ' Linear, Inc. ' -> 'linear inc'."""
    return _NOT_ALNUM.sub(" ", value.strip().lower()).strip()


def normalize_name(value: str) -> str:
    """``normalize_text`` capped at NAME_LIMIT characters.

    Lowercasing can lengthen text ('İ' becomes two characters), and a name is
    stored and compared in a column of that width.
    """
    return normalize_text(value)[:NAME_LIMIT].strip()


@dataclass(frozen=True)
class NormalizedURL:
    url: str
    domain: str


def normalize_url(value: str) -> NormalizedURL | None:
    """An http(s) URL with a lowercase (punycode) host, or None when it is not one.

    A bare host gets ``https://``. The domain is the host without one leading
    ``www.``, so http/https and www/no-www compare equal; other subdomains stay
    distinct.
    """
    text = value.strip()
    if not text or any(c.isspace() for c in text):
        return None
    if re.match(r"^[a-z][a-z0-9+.-]*://", text, re.IGNORECASE):
        if not re.match(r"^https?://", text, re.IGNORECASE):
            return None  # ftp://, javascript:// and friends are not tool websites
    else:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme.lower() not in ("http", "https") or not host or parts.username or parts.password:
        return None
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    if not re.match(r"^[a-z0-9.-]+$|^\[[0-9a-f:.]+\]$", host) and ":" not in host:
        return None
    scheme = parts.scheme.lower()
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        netloc = f"{netloc}:{port}"
    url = f"{scheme}://{netloc}{parts.path or '/'}"
    if parts.query:
        url += f"?{parts.query}"
    domain = host[4:] if host.startswith("www.") else host
    if len(url) > URL_LIMIT or len(domain) > DOMAIN_LIMIT:
        return None  # punycode can make a short-looking URL longer than anything we store
    return NormalizedURL(url=url, domain=domain)
