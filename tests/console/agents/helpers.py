"""Helpers for the agents pages' tests."""

from __future__ import annotations

import html
import re
from typing import Any

from django.test import Client

from accounts.models import Membership
from tests.support.secret_watch import WATCH

KEY = re.compile(r"sk_agent_[A-Za-z0-9_-]{20,}")
SNIPPET = re.compile(r'<pre id="snippet-([a-z-]+)"[^>]*>(.*?)</pre>', re.S)
ENV_LINES = re.compile(r'<pre class="value env-lines" id="agent-env">(.*?)</pre>', re.S)


def console_for(membership: Membership) -> Client:
    client = Client()
    client.force_login(membership.user)
    return client


def page(response: Any) -> str:
    return str(response.content.decode())


def take_shown_key(response: Any) -> str:
    """The key on the key-shown-once page, which must show it in exactly one place.

    That response is the one place a key may appear (as the vend body is for a
    credential), so it, and only it, is taken out of the session's secret watch:
    any other response that contains the key still fails the run.
    """
    assert response.status_code == 200
    text = page(response)
    keys = KEY.findall(text)
    assert len(keys) == 1, keys
    key = str(keys[0])
    assert "shown this once" in text
    assert "no-store" in response["Cache-Control"]
    assert key not in str(response.cookies), "never in a cookie (session, messages)"
    where = f"{response.wsgi_request.method} {response.wsgi_request.path} -> 200"
    with WATCH.lock:
        WATCH.corpus[:] = [(w, t) for (w, t) in WATCH.corpus if not (w == where and key in t)]
    return key


def snippets_on(response: Any) -> dict[str, str]:
    return {
        slug: html.unescape(re.sub(r"<[^>]+>", "", body)) for slug, body in SNIPPET.findall(page(response))
    }


def env_lines_on(response: Any) -> str:
    match = ENV_LINES.search(page(response))
    assert match, "the env lines are on the page"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1)))
