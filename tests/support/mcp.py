"""An agent's view of /mcp through the official MCP client (ClientSession over streamable HTTP)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

T = TypeVar("T")


@dataclass
class ToolResult:
    """A tool call's outcome: ``body`` is the JSON object in its text content."""

    is_error: bool
    body: dict[str, Any]
    raw: CallToolResult


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh event loop in its own thread.

    Playwright's sync API (the browser tests) leaves an event loop running in the main thread
    for the rest of the session, and ``asyncio.run`` refuses to start inside a running loop.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class McpAgent:
    """Connects with an agent key, as Claude Code or Cursor would from an mcp.json entry."""

    def __init__(self, url: str, key: str | None) -> None:
        self.url = url
        self.headers = {} if key is None else {"Authorization": f"Bearer {key}"}

    async def _with_session(self, use: Callable[[ClientSession], Awaitable[T]]) -> T:
        async with (
            httpx2.AsyncClient(headers=self.headers, timeout=30) as http,
            streamable_http_client(self.url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await use(session)

    def session(self, use: Callable[[ClientSession], Awaitable[T]]) -> T:
        return run_async(self._with_session(use))

    def tool_names(self) -> list[str]:
        async def names(session: ClientSession) -> list[str]:
            return [t.name for t in (await session.list_tools()).tools]

        return self.session(names)

    def list_tool_definitions(self) -> list[Any]:
        async def tools(session: ClientSession) -> list[Any]:
            return list((await session.list_tools()).tools)

        return self.session(tools)

    def call(self, tool: str, /, **arguments: Any) -> ToolResult:
        async def call(session: ClientSession) -> CallToolResult:
            return await session.call_tool(tool, arguments)

        result = self.session(call)
        text = result.content[0].text if result.content else "{}"  # type: ignore[union-attr]
        return ToolResult(is_error=bool(result.is_error), body=json.loads(text), raw=result)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        return


@contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    """Serve the project's WSGI application (``agentkey.wsgi.application``) on 127.0.0.1."""
    httpd = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
