"""Hostile input on the agent surfaces: never a 500, always the documented error body.

Body caps, strict content types, odd Unicode, huge and malformed query strings
and path values, and header abuse, on /api/..., /proxy/... and /mcp. The REST
and proxy refusals are ``{"error", "hint"}``; /mcp's HTTP refusals are too, and
after authentication a malformed JSON-RPC message gets the SDK's JSON-RPC error
(docs/mcp.md).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from werkzeug.test import Client as WsgiClient

from grants.proxy import MAX_BODY as PROXY_MAX_BODY
from grants.services import grant_assign
from tests import factories
from tests.proxy.upstream import Reply, upstream

pytestmark = pytest.mark.django_db

BODY_CAP = 8192
REASON = "I need it to file the weekly report."


@pytest.fixture
def world(org: Any, issued: Any, tool: Any, operator: Any, settings: Any) -> Iterator[dict[str, Any]]:
    settings.AGENTKEY_ALLOW_LOOPBACK_URLS = True
    with upstream(lambda seen: Reply()) as server:
        proxy_tool = factories.make_tool(
            org, "Billing API", access_mode="proxy", upstream_origin=server.origin
        )
        grant_assign(agent=issued.agent, tool=tool, actor=operator)
        grant_assign(agent=issued.agent, tool=proxy_tool, actor=operator)
        yield {"key": issued.key.plaintext, "tool": str(tool.id), "proxy": str(proxy_tool.id)}


def send(world: dict[str, Any], method: str, path: str, body: bytes = b"", **environ: Any) -> Any:
    environ.setdefault("HTTP_AUTHORIZATION", f"Bearer {world['key']}")
    environ.setdefault("content_type", "application/json")
    path = path.format(tool=world["tool"], proxy=world["proxy"])
    return Client().generic(method, path, body, **environ)


def assert_documented(response: Any) -> dict[str, Any] | None:
    """No 5xx; a 4xx is the one error shape."""
    assert response.status_code < 500, response.content[:300]
    if response.status_code < 400:
        return None
    body: dict[str, Any] = json.loads(
        b"".join(response.streaming_content) if response.streaming else response.content
    )
    assert isinstance(body["error"], str)
    assert isinstance(body["hint"], str)
    assert body["error"]
    assert body["hint"]
    return body


POSTS = ["/api/tools/suggest", "/api/tools/{tool}/request", "/api/tools/{tool}/instructions/suggest"]
GETS = ["/api/tools", "/api/me", "/api/tools/{tool}/credentials", "/proxy/{proxy}/v1/items"]
EVERY = [("POST", p) for p in POSTS] + [("GET", p) for p in GETS] + [("POST", "/proxy/{proxy}/v1/items")]


def valid_body(path: str) -> dict[str, Any]:
    if path.endswith("/request"):
        return {"reason": REASON}
    if path.endswith("/instructions/suggest"):
        return {"learned": "Use the team key PLATFORM.", "why": "Saves the next agent an hour."}
    return {"name": "Notion", "reason": REASON}


# --- bodies ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("size", [BODY_CAP + 1, 10 * BODY_CAP, 2 * 1024 * 1024])
def test_a_body_over_the_cap_is_413(world, path, size):
    body = json.dumps({**valid_body(path), "reason": "x" * size}).encode()
    response = send(world, "POST", path, body)
    assert response.status_code == 413
    assert_documented(response)


def test_a_proxied_body_over_the_proxy_cap_is_413(world):
    response = send(world, "POST", "/proxy/{proxy}/v1/items", b"x" * (PROXY_MAX_BODY + 1))
    assert response.status_code == 413
    assert_documented(response)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/jsonx",
        "application/xml",
        "",
        "application/json\u00e9",
        "*/*",
    ],
)
def test_anything_but_json_is_415(world, content_type):
    for path in POSTS:
        response = send(world, "POST", path, json.dumps(valid_body(path)).encode(), content_type=content_type)
        assert response.status_code == 415, (path, response.content)
        assert_documented(response)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"\xef\xbb\xbf{}",  # a byte-order mark
        b"\xff\xfe{\x00}\x00",  # UTF-16
        b'{"reason": "\xc0\xaf"}',  # an overlong encoding
        b'{"reason": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8
        b'{"reason": NaN}',
        b'{"reason": 1e999999}',
        b"[" * 100_00 + b"]" * 100_00,
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b'{"reason": "a", "reason": "b"}',
        b'"just a string"',
        b"null",
        b"\x00",
    ],
)
def test_malformed_json_is_400_or_413(world, raw):
    for path in POSTS:
        response = send(world, "POST", path, raw)
        assert response.status_code in (400, 413), (path, response.content)
        assert_documented(response)


ODD = [
    "\u0000",
    "nul\u0000inside",
    "\ud800",  # a lone surrogate, sent as the JSON escape \ud800
    "\udfff\ud800",
    "\u202eevil\u202c",  # right-to-left override
    "\u200b\u200d\ufeff",  # zero-width characters and a BOM
    "e\u0301" * 200,  # combining marks
    "\U0001f600" * 100,
    "\x1b[31mred\x1b[0m",
    "\r\n\t",
    "\u0130" * 100,
    "ß" * 120,
    " " * 50,
]


@pytest.mark.parametrize("text", ODD, ids=range(len(ODD)))
def test_odd_unicode_in_every_field_is_stored_or_refused_never_500(world, text):
    for path in POSTS:
        for name in valid_body(path):
            response = send(world, "POST", path, json.dumps({**valid_body(path), name: text}).encode())
            assert response.status_code in (201, 400, 409), (path, name, response.content)
            assert_documented(response)


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("length", [1_000, 4_000, 10_000])
def test_very_long_values_are_400_or_413(world, path, length):
    """Names stop at 120 characters, reasons at 500; guide text (2,000) and the body cap come next."""
    field = next(iter(valid_body(path)))
    response = send(world, "POST", path, json.dumps({**valid_body(path), field: "n" * length}).encode())
    assert response.status_code in ((201, 400, 413) if field == "learned" and length < 2000 else (400, 413))
    assert_documented(response)


@pytest.mark.parametrize("space", ["\u00a0", "\u2003", " "])
def test_a_value_over_its_limit_is_refused_even_when_trimming_would_bring_it_under(world, space):
    """Found by the fuzzer: a 501-character reason that starts with a no-break space was trimmed
    to 500 before the length check, so text the schema forbids was accepted."""
    body = {"name": "Trimmed Tool", "reason": space + "r" * 500}
    response = send(world, "POST", "/api/tools/suggest", json.dumps(body).encode())
    assert response.status_code == 400
    assert_documented(response)


@pytest.mark.parametrize(
    "value",
    [None, 12, 1.5, True, [], {}, ["a"], {"a": "b"}, "1\u017f", "\u0661h", "9" * 16, "0", "-1h", "1h" * 8],
)
def test_a_duration_of_any_type_or_form_is_201_or_400(world, org, value):
    tool = factories.make_tool(org, f"Tool {value!r}"[:60])
    body = json.dumps({"reason": REASON, "duration": value}).encode()
    response = send(world, "POST", f"/api/tools/{tool.id}/request", body)
    assert response.status_code in (201, 400), response.content
    assert_documented(response)


def test_the_duration_long_s_that_used_to_500_is_a_400(world, org):
    """Under Unicode case folding the long s (U+017F) matched the unit "s", which then had no
    entry in the unit table: a KeyError, a 500."""
    tool = factories.make_tool(org, "Folding")
    raw = json.dumps({"reason": REASON, "duration": "1\u017f"}).encode()
    response = send(world, "POST", f"/api/tools/{tool.id}/request", raw)
    assert response.status_code == 400
    body = assert_documented(response)
    assert body is not None
    assert body["details"][0]["field"] == "duration"


# --- query strings and paths -----------------------------------------------------------------------


QUERIES = [
    "x=" + "a" * 100_000,
    "&".join(f"k{i}=v" for i in range(5_000)),
    "%ff%fe%00=%00",
    "a=%",
    "a=%zz",
    "format=xml",
    "format=api",
    "format=" + "j" * 5000,
    "%E2%80%AE=%E2%80%AE",
    "\xe2\x80\xae=\xff",  # raw non-ASCII bytes, as a WSGI server hands them over (latin-1)
    "a[]=1&a[]=2&a[x]=3",
    ";;;===&&&",
]


@pytest.mark.parametrize("query", QUERIES, ids=range(len(QUERIES)))
def test_huge_or_malformed_query_strings_never_500(world, query):
    for method, path in EVERY:
        body = json.dumps(valid_body(path)).encode() if method == "POST" else b""
        response = send(world, method, path, body, QUERY_STRING=query)
        if path.startswith("/proxy/") and response.status_code == 414:
            continue  # the upstream's own answer to a 100 kB request line, passed through
        assert_documented(response)


PATHS = [
    "/api/tools/" + "a" * 10_000 + "/credentials",
    "/api/tools/" + "1" * 36 + "/credentials",
    "/api/tools/%00/credentials",
    "/api/tools/%ff%fe/credentials",
    "/api/tools/\u202e/credentials",
    "/api/tools/..%2f..%2fadmin/credentials",
    "/api/tools/{tool}%00/credentials",
    "/api/tools/{tool}\n/credentials",
    "/api/tools/{TOOL}/credentials",
    "/api/tools/{{{tool}}}/credentials",
    "/api/tools/00000000-0000-0000-0000-000000000000/credentials",
    "/api/tools//credentials",
    "/api/" + "x/" * 2000,
    "/api/tools/{tool}/credentials/" + "y" * 5000,
    "/proxy/" + "p" * 10_000 + "/x",
    "/proxy/{proxy}/" + "%2e%2e/" * 50,
    "/proxy/{proxy}/%00",
    "/proxy/%ff/x",
]


@pytest.mark.parametrize("path", PATHS, ids=range(len(PATHS)))
def test_huge_or_malformed_path_values_never_500(world, path):
    path = path.replace("{TOOL}", world["tool"].upper())
    for method in ("GET", "POST"):
        assert_documented(send(world, method, path, b"{}" if method == "POST" else b""))


# --- headers ---------------------------------------------------------------------------------------


AUTHORIZATIONS = [
    "Bearer " + "sk_agent_" + "A" * 100_000,
    "Bearer " + "x" * 1_000_000,
    "Bearer sk_agent_\xff\xfe\xe9",  # non-ASCII bytes, as a WSGI server hands them over (latin-1)
    "Bearer sk_agent_\u00c3\u00a9",  # UTF-8 read as latin-1
    "Bearer sk_agent_abc\x00def",
    "Bearer \t sk_agent_abc",
    "Bearer {key}, Bearer {key}",  # two Authorization headers, joined by the server
    "Bearer {key},Bearer sk_agent_other",
    "Bearer {key} {key}",
    "bearer {key}\r\nX-Injected: 1",
    "Basic " + "A" * 10_000,
    "Bearer",
    "Digest username=x",
    "\x7f\x80\x81",
]


@pytest.mark.parametrize("authorization", AUTHORIZATIONS, ids=range(len(AUTHORIZATIONS)))
def test_abusive_authorization_headers_are_401(world, authorization):
    for method, path in EVERY:
        body = json.dumps(valid_body(path)).encode() if method == "POST" else b""
        response = send(world, method, path, body, HTTP_AUTHORIZATION=authorization.format(key=world["key"]))
        assert response.status_code == 401, (method, path, response.content[:300])
        assert_documented(response)


@pytest.mark.parametrize(
    "length", ["abc", "-1", "-99999", "1e3", " 5", "99999999999999999999", "0x10", "\u0661"]
)
def test_a_bad_content_length_never_500(world, length):
    for method, path in EVERY:
        body = json.dumps(valid_body(path)).encode() if method == "POST" else b""
        # A plain stream, not the test client's payload (which refuses a read past the body), so a
        # declared length larger than the body behaves as with a client that sent less and closed.
        stream = io.BytesIO(body)
        response = send(world, method, path, body, CONTENT_LENGTH=length, **{"wsgi.input": stream})
        assert_documented(response)


@pytest.mark.parametrize(
    "header",
    [
        ("HTTP_ACCEPT", "application/xml"),
        ("HTTP_ACCEPT", "text/html;q=\xff"),
        ("HTTP_ACCEPT", "*/*;" * 5000),
        ("HTTP_ACCEPT_ENCODING", "\xff" * 1000),
        ("HTTP_ORIGIN", "null"),
        ("HTTP_ORIGIN", "https://\u00e9vil.example"),
        ("HTTP_X_REQUEST_ID", "\xff" * 100),
        ("HTTP_X_FORWARDED_FOR", ",".join(["1.2.3.4"] * 5000)),
        ("HTTP_X_FORWARDED_FOR", "\xff, not-an-ip, ::1%eth0"),
        ("HTTP_HOST", "evil.example"),
        ("HTTP_HOST", "localhost:\xff"),
        ("HTTP_COOKIE", "sessionid=" + "\xff" * 100 + "; csrftoken=\x00"),
        ("HTTP_CONTENT_ENCODING", "gzip"),
        ("HTTP_TRANSFER_ENCODING", "chunked"),
    ],
    ids=lambda h: h[0] if isinstance(h, tuple) else h,
)
def test_odd_headers_never_500(world, header):
    name, value = header
    for method, path in EVERY:
        body = json.dumps(valid_body(path)).encode() if method == "POST" else b""
        assert_documented(send(world, method, path, body, **{name: value}))


# --- /mcp ------------------------------------------------------------------------------------------


@pytest.fixture
def mcp(transactional_db: Any, monkeypatch: pytest.MonkeyPatch, issued: Any) -> Any:
    from django.db import connections

    from agentkey.wsgi import application

    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
    return WsgiClient(application), issued.key.plaintext


def test_hostile_input_on_mcp_is_refused_with_the_rest_body_or_a_json_rpc_error(mcp: Any) -> None:
    client, key = mcp
    accept = "application/json, text/event-stream"
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    good = json.dumps(call).encode()
    cases: list[tuple[dict[str, str], bytes, set[int]]] = [
        ({}, b"x" * (2 * BODY_CAP + 1), {413}),
        ({"CONTENT_LENGTH": "abc"}, good, {413}),
        ({"CONTENT_LENGTH": "-1"}, good, {413}),
        ({"Authorization": "Bearer " + "k" * 100_000}, good, {401}),
        ({"Authorization": "Bearer sk_agent_\xff\xfe"}, good, {401}),
        ({"Authorization": f"Bearer {key}, Bearer {key}"}, good, {401}),
        ({"Authorization": ""}, good, {401}),
        ({"Origin": "https://evil.example"}, good, {403}),
        ({"Content-Type": "text/plain"}, good, {415}),
        ({"Content-Type": "*/*"}, good, {415}),
        ({}, b"{", {400}),
        ({}, b"\xff\xfe", {400}),
        ({}, json.dumps({**call, "method": "\u0000" * 100}).encode(), {200, 400}),
        (
            {},
            b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "\\ud800"}}',
            {200, 400},
        ),
        ({}, json.dumps({**call, "id": "\u202e" * 1000}).encode(), {200, 400}),
        ({}, b"[" * 5000 + b"]" * 5000, {400}),
    ]
    for headers, body, allowed in cases:
        environ = {k: v for k, v in headers.items() if k.isupper()}
        sent = {"Accept": accept, "Content-Type": "application/json", "Authorization": f"Bearer {key}"}
        sent |= {k: v for k, v in headers.items() if not k.isupper()}
        response = client.post("/mcp", data=body, headers=sent, environ_overrides=environ)
        where = f"{headers} {body[:40]!r}: {response.status_code} {response.get_data()[:200]!r}"
        assert response.status_code in allowed, where
        if response.status_code >= 400:
            assert response.get_data().startswith(b"{"), where
            payload = json.loads(response.get_data())
            rest = isinstance(payload.get("error"), str) and bool(payload.get("hint"))
            json_rpc = isinstance(payload.get("error"), dict) and payload.get("jsonrpc") == "2.0"
            assert rest or json_rpc, where
