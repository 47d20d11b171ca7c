"""Fetching a documentation page through the SSRF-safe client, as readable text."""

from __future__ import annotations

from agentkey.core import http
from catalog.drafts.errors import NOT_A_PAGE, PAGE_STATUS, TOO_LITTLE_TEXT, DraftFailed
from catalog.drafts.text import html_to_text, plain_to_text, useful_length

PORTS = (80, 443)
TIMEOUT_SECONDS = 15
MAX_BYTES = 2 * 1024 * 1024
MIN_USEFUL = 400
HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = ("text/plain", "text/markdown", "text/x-markdown")


def check(url: str) -> http.Target:
    """Refuse a URL the fetch would refuse (scheme, port, private or metadata address): UnsafeURL."""
    return http.check_url(url, ports=PORTS)


def fetch_text(url: str) -> str:
    """The page's readable text. Raises UnsafeURL / FetchFailed from the client, DraftFailed otherwise.

    Every hop (redirects included) is checked after DNS resolution and the
    connection is pinned to the checked address; the body is capped at 2 MiB
    and the exchange at 15 seconds.
    """
    response = http.request(
        "GET",
        url,
        headers={"Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1"},
        timeout=TIMEOUT_SECONDS,
        max_bytes=MAX_BYTES,
        ports=PORTS,
    )
    if not 200 <= response.status < 300:
        raise DraftFailed(PAGE_STATUS.format(status=response.status))
    content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = response.text()
    if content_type in HTML_TYPES or (not content_type and body.lstrip()[:1] == "<"):
        text = html_to_text(body)
    elif content_type in TEXT_TYPES or not content_type:
        text = plain_to_text(body)
    else:
        raise DraftFailed(NOT_A_PAGE.format(content_type=content_type[:80]))
    count = useful_length(text)
    if count < MIN_USEFUL:
        raise DraftFailed(TOO_LITTLE_TEXT.format(count=count, minimum=MIN_USEFUL))
    return text
