"""Every agent endpoint, for every kind of caller → the expected status and the error shape.

Generated from the URL configuration: an agent route (under ``/api/`` but the
schema and its docs, or under ``/proxy/``) that is not in SPECS fails
``test_every_agent_route_has_an_entry``, so a new endpoint cannot ship without
deciding who may call it. ``/mcp`` is mounted in front of Django
(``agentkey.mcp.mount``) and has its own row.

Callers: ``own`` (a valid key, the tool of its organization), ``other_org``
(the same key, another organization's tool), ``suspended``, ``rotated_out``
(the key before a rotation without grace), ``expired_key``, ``no_key`` and
``malformed_key``. Every caller but the first holds an approved grant on the
same tool, so the refusal can only come from what the column names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from werkzeug.test import Client as WsgiClient

from accounts.models import AgentKey
from accounts.services import agent_key_rotate, agent_suspend
from agentkey.mcp.mount import PATH as MCP_PATH
from grants.services import grant_assign
from tests import factories
from tests.proxy.upstream import Reply, upstream
from tests.support.http import AgentClient

CALLERS = ["own", "other_org", "suspended", "rotated_out", "expired_key", "no_key", "malformed_key"]
#: What each caller gets where the endpoint needs a key (``own`` gets the operation's success).
REFUSED = {"other_org": 404, "suspended": 403, "rotated_out": 401, "expired_key": 401}
REFUSED |= {"no_key": 401, "malformed_key": 401}
MALFORMED = "Bearer sk_agent_%%%\u202e"


@dataclass(frozen=True)
class Op:
    method: str
    ok: int
    tool: str | None = None  # the tool the path names: "approved" (granted) or "fresh" (no grant yet)
    body: dict[str, Any] = field(default_factory=dict)
    open: bool = False  # schema discovery: answered without a key, to anyone

    def expected(self, caller: str) -> int:
        if caller == "own" or self.open:
            return self.ok
        if caller == "other_org" and self.tool is None:
            return self.ok  # nothing of another organization is named; see the body check
        return REFUSED[caller]


REQUEST = {"reason": "I need it to file the weekly report."}
GUIDE = {"learned": "Use the team key PLATFORM.", "why": "Saves the next agent an hour."}
SUGGEST = {"name": "Foreign Tool", "reason": "The team tracks all work there."}

#: Route (trailing slash dropped: each agent route also answers with one) → its operations.
SPECS: dict[str, list[Op]] = {
    "api/tools": [Op("GET", 200)],
    "api/me": [Op("GET", 200)],
    "api/tools/suggest": [Op("GET", 200, open=True), Op("POST", 201, body=SUGGEST)],
    "api/tools/<str:tool_id>/request": [
        Op("GET", 200, tool="fresh", open=True),
        Op("POST", 201, tool="fresh", body=REQUEST),
    ],
    "api/tools/<str:tool_id>/credentials": [Op("GET", 200, tool="approved")],
    "api/tools/<str:tool_id>/instructions/suggest": [
        Op("GET", 200, tool="approved", open=True),
        Op("POST", 201, tool="approved", body=GUIDE),
    ],
    "proxy/<str:tool_id>": [Op("GET", 200, tool="proxy")],
    "proxy/<str:tool_id>/<path:path>": [Op("GET", 200, tool="proxy")],
}
NOT_AGENT_ROUTES = {"api/schema/", "api/docs/"}


def agent_routes() -> list[str]:
    routes = []
    for entry in get_resolver().url_patterns:
        assert not isinstance(entry, URLResolver) or not str(entry.pattern).startswith(("api/", "proxy/")), (
            "agent routes are listed at the top level of agentkey.urls"
        )
        route = str(entry.pattern)
        if (
            isinstance(entry, URLPattern)
            and route.startswith(("api/", "proxy/"))
            and route not in NOT_AGENT_ROUTES
        ):
            routes.append(route)
    return routes


def cells() -> Iterator[Any]:
    for route in agent_routes():
        for op in SPECS.get(route.rstrip("/"), []):
            yield pytest.param(route, op, id=f"{op.method} /{route}")


def test_every_agent_route_has_an_entry():
    routes = {route.rstrip("/") for route in agent_routes()}
    assert routes - set(SPECS) == set(), "new agent routes need an entry in SPECS"
    assert set(SPECS) - routes == set(), "SPECS names routes that no longer exist"


def test_the_matrix_covers_every_route_and_caller():
    rest = sum(len(SPECS[route.rstrip("/")]) for route in agent_routes())
    assert rest * len(CALLERS) >= 140  # 21 operations x 7 callers, and /mcp's row on top


@dataclass
class World:
    keys: dict[str, str | None]
    tools: dict[str, str]
    foreign: dict[str, str]


def build_world(origin: str) -> World:
    org, other = factories.make_org("Acme"), factories.make_org("Globex")
    operator = factories.OPERATOR
    tools = {
        "approved": factories.make_tool(org, "Linear"),
        "fresh": factories.make_tool(org, "Notion"),
        "proxy": factories.make_tool(org, "Billing API", access_mode="proxy", upstream_origin=origin),
    }
    foreign = {
        "approved": factories.make_tool(other, "Foreign Tool"),
        "fresh": factories.make_tool(other, "Foreign Fresh"),
        "proxy": factories.make_tool(other, "Foreign Proxy", access_mode="proxy", upstream_origin=origin),
    }
    for tool in foreign.values():
        grant_assign(agent=factories.make_agent(other).agent, tool=tool, actor=operator)
    keys: dict[str, str | None] = {"no_key": None, "malformed_key": None}
    for caller in ("own", "suspended", "rotated_out", "expired_key"):
        issued = factories.make_agent(org, f"{caller}-agent")
        for name in ("approved", "proxy"):
            grant_assign(agent=issued.agent, tool=tools[name], actor=operator)
        keys[caller] = issued.key.plaintext
        if caller == "suspended":
            agent_suspend(agent=issued.agent, actor=operator)
        elif caller == "rotated_out":
            agent_key_rotate(agent=issued.agent, actor=operator)
        elif caller == "expired_key":
            past = timezone.now() - timedelta(seconds=1)
            AgentKey.objects.filter(pk=issued.key.key.pk).update(expires_at=past)
    keys["other_org"] = keys["own"]
    return World(
        keys=keys,
        tools={name: str(tool.id) for name, tool in tools.items()},
        foreign={name: str(tool.id) for name, tool in foreign.items()},
    )


def assert_error_shape(response: Any, where: str) -> None:
    body = json.loads(response.get_data() if hasattr(response, "get_data") else response.content)
    assert isinstance(body.get("error"), str), where
    assert isinstance(body.get("hint"), str), where
    assert body["error"], where
    assert body["hint"], where


@pytest.fixture
def origin(settings: Any) -> Iterator[str]:
    settings.AGENTKEY_ALLOW_LOOPBACK_URLS = True
    with upstream(lambda seen: Reply()) as server:
        yield server.origin


@pytest.mark.django_db
@pytest.mark.parametrize(("route", "op"), list(cells()))
def test_agent_endpoint_answers_each_caller_as_specified(route: str, op: Op, origin: str) -> None:
    world = build_world(origin)
    outcomes: dict[str, int] = {}
    # The callers refused are asked first: a refusal must change nothing the own call depends on.
    for caller in [*CALLERS[1:], CALLERS[0]]:
        tools = world.foreign if caller == "other_org" else world.tools
        path = "/" + route.replace("<str:tool_id>", tools.get(op.tool or "approved", "")).replace(
            "<path:path>", "v1/items"
        )
        client = AgentClient(world.keys[caller])
        headers = {"Authorization": MALFORMED} if caller == "malformed_key" else {}
        if op.method == "GET":
            response = client.get(path, **headers)
        else:
            response = client.post(path, op.body, **headers)
        outcomes[caller] = response.status_code
        where = f"{op.method} {path} as {caller}: {response.status_code}"
        assert response.status_code < 500, where
        if response.status_code >= 400:
            assert_error_shape(response, where)
        if caller == "other_org":
            content = b"".join(response.streaming_content) if response.streaming else response.content
            for foreign_id in world.foreign.values():
                assert foreign_id.encode() not in content, f"{where} shows another organization's tool"
    assert outcomes == {caller: op.expected(caller) for caller in CALLERS}


# --- /mcp (mounted in front of Django) -------------------------------------------------------------


def test_mcp_is_the_mount_in_front_of_django():
    from agentkey import wsgi

    assert MCP_PATH == "/mcp"
    assert type(wsgi.application).__name__ == "McpMount"


@pytest.fixture
def mcp_app(transactional_db: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from django.db import connections

    from agentkey.wsgi import application

    # The SDK answers on its own event-loop thread with its own connection: committed data,
    # and connections closed after each request so the test database can be dropped.
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
    return application


def test_mcp_answers_each_caller_as_specified(mcp_app: Any, origin: str) -> None:
    world = build_world(origin)
    client = WsgiClient(mcp_app)
    outcomes: dict[str, int] = {}
    for caller in [*CALLERS[1:], CALLERS[0]]:
        tools = world.foreign if caller == "other_org" else world.tools
        key = world.keys[caller]
        headers = {"Accept": "application/json, text/event-stream"}
        if caller == "malformed_key":
            headers["Authorization"] = MALFORMED
        elif key is not None:
            headers["Authorization"] = f"Bearer {key}"
        call = {"name": "get_credential", "arguments": {"tool_id": tools["approved"]}}
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}
        response = client.post(MCP_PATH, json=body, headers=headers)
        where = f"POST /mcp as {caller}: {response.status_code}"
        outcomes[caller] = response.status_code
        if response.status_code >= 400:
            assert_error_shape(response, where)
            continue
        result = response.get_json()["result"]
        assert result["isError"] is (caller == "other_org"), where
        if caller == "other_org":
            assert json.loads(result["content"][0]["text"])["error"] == "Tool not found."
    # An MCP tool error is a JSON-RPC result (HTTP 200, isError); the REST body is inside it.
    expected = {caller: (200 if caller == "other_org" else REFUSED.get(caller, 200)) for caller in CALLERS}
    assert outcomes == expected
