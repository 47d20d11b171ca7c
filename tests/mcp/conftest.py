"""The MCP endpoint served in-process: the project's WSGI application on a real socket.

The server threads use their own database connections, so these tests run on
committed data (``transactional_db``), exactly as a deployment would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.mcp import McpAgent, serve_wsgi


@pytest.fixture
def mcp_url(transactional_db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from django.db import connections

    from agentkey.wsgi import application

    # Server threads close their connections after each request (as with the production pool),
    # so the test database can be dropped at the end of the run.
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
    with serve_wsgi(application) as base:
        yield base + "/mcp"


@pytest.fixture
def mcp(mcp_url: str, issued: Any) -> McpAgent:
    return McpAgent(mcp_url, issued.key.plaintext)
