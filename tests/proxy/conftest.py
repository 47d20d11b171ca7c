"""Fixtures for the tool proxy: a real upstream on 127.0.0.1 and a proxy-mode tool in front of it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from catalog.models import Tool
from grants.services import grant_assign
from tests import factories
from tests.proxy.upstream import Reply, Seen, Upstream, upstream
from tests.support.secret_watch import WATCH


class Script:
    """What the upstream answers next; tests swap ``reply`` to script it."""

    def __init__(self) -> None:
        self.reply: Callable[[Seen], Reply] = lambda seen: Reply()

    def __call__(self, seen: Seen) -> Reply:
        return self.reply(seen)


@pytest.fixture
def loopback(settings: Any) -> None:
    settings.AGENTKEY_ALLOW_LOOPBACK_URLS = True


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def up(loopback: None, script: Script) -> Iterator[Upstream]:
    with upstream(script) as server:
        yield server


@pytest.fixture
def proxy_tool(org: Any, credential: str, up: Upstream) -> Tool:
    return factories.make_tool(
        org, "Billing API", credential=credential, access_mode="proxy", upstream_origin=up.origin
    )


@pytest.fixture
def granted(agent: Any, proxy_tool: Tool, operator: Any) -> Any:
    return grant_assign(agent=agent, tool=proxy_tool, actor=operator)


def body_of(response: Any) -> bytes:
    """Read a (streamed) response and hand it to the session's secret watch."""
    body = b"".join(response.streaming_content) if response.streaming else response.content
    headers = "\n".join(f"{k}: {v}" for k, v in response.items())
    WATCH.record(f"proxy response {response.status_code}", headers + "\n" + body.decode("utf-8", "replace"))
    return body
