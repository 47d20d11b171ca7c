"""The tool proxy end to end: a real upstream on 127.0.0.1, the agent's own key, the credential injected."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from django.utils import timezone

from accounts.services import agent_key_rotate, agent_suspend
from audit.models import Action, AuditEvent
from catalog.services import tool_update
from grants.models import AccessGrant, GrantStatus
from grants.proxy import MAX_BODY
from grants.services import grant_assign, grant_deny, grant_request, grant_revoke
from tests import factories
from tests.proxy.conftest import body_of
from tests.proxy.upstream import Reply, Seen, upstream
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db


def call(api: AgentClient, method: str, path: str, body: bytes = b"", **headers: str) -> Any:
    content_type = headers.pop("content_type", "application/json")
    return api.client.generic(method, path, body, content_type=content_type, headers=api._headers(headers))


def proxied_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=Action.CREDENTIAL_PROXIED).order_by("id"))


# --- injection -------------------------------------------------------------------------------------


def test_upstream_sees_the_credential_in_the_header_and_never_the_agents_key(
    api, issued, proxy_tool, granted, up, script, credential
):
    script.reply = lambda seen: Reply(status=201, chunks=[b'{"id": "inv_1"}'])
    response = call(
        api,
        "POST",
        f"/proxy/{proxy_tool.id}/v1/invoices?expand=lines&limit=2",
        json.dumps({"amount": 42}).encode(),
        Cookie="sessionid=agent-cookie",
        X_Trace="trace-1",
    )
    assert response.status_code == 201
    assert json.loads(body_of(response)) == {"id": "inv_1"}
    assert response["Content-Type"] == "application/json"
    (seen,) = up.seen
    assert (seen.method, seen.target) == ("POST", "/v1/invoices?expand=lines&limit=2")
    assert seen.headers["authorization"] == f"Bearer {credential}"
    assert issued.key.plaintext not in json.dumps(seen.headers)
    assert "cookie" not in seen.headers
    assert seen.headers["host"] == up.origin.removeprefix("http://")
    assert seen.headers["x-trace"] == "trace-1"
    assert seen.headers["content-type"] == "application/json"
    assert json.loads(seen.body) == {"amount": 42}


def test_a_custom_header_template_is_used(api, proxy_tool, granted, up, credential, owner):
    tool_update(tool=proxy_tool, actor=owner, inject_name="X-Api-Key", inject_template="Token {credential}")
    response = api.get(f"/proxy/{proxy_tool.id}/ping", X_Api_Key="agent-supplied")
    assert response.status_code == 200
    body_of(response)
    (seen,) = up.seen
    assert seen.headers["x-api-key"] == f"Token {credential}"
    assert "authorization" not in seen.headers


def test_query_mode_appends_the_credential_and_replaces_a_same_named_parameter(
    api, proxy_tool, granted, up, credential, owner
):
    tool_update(tool=proxy_tool, actor=owner, inject_as="query", inject_name="api_key")
    response = api.get(f"/proxy/{proxy_tool.id}/v2/search?q=caf%C3%A9+au+lait&api_key=mine&page=2")
    assert response.status_code == 200
    body_of(response)
    (seen,) = up.seen
    assert seen.query == [("q", "café au lait"), ("page", "2"), ("api_key", credential)]
    assert "authorization" not in seen.headers


def test_a_per_agent_tool_injects_the_grants_own_credential(org, agent, api, up, operator):
    own = factories.new_credential("per_agent")
    tool = factories.make_tool(
        org, "Per-agent API", mode="per_agent", access_mode="proxy", upstream_origin=up.origin
    )
    grant_assign(agent=agent, tool=tool, actor=operator, credential=own)
    response = api.get(f"/proxy/{tool.id}/me")
    assert response.status_code == 200
    body_of(response)
    assert up.seen[0].headers["authorization"] == f"Bearer {own}"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])
def test_every_method_is_forwarded(api, proxy_tool, granted, up, script, method):
    script.reply = lambda seen: Reply(chunks=[seen.method.encode()])
    response = call(api, method, f"/proxy/{proxy_tool.id}/items/7", b'{"a":1}' if method != "GET" else b"")
    assert response.status_code == 200
    body = body_of(response)
    assert up.seen[0].method == method
    assert body == (b"" if method == "HEAD" else method.encode())


def test_the_root_path_and_unicode_paths_are_forwarded_encoded(api, proxy_tool, granted, up):
    for path, expected in (
        (f"/proxy/{proxy_tool.id}", "/"),
        (f"/proxy/{proxy_tool.id}/", "/"),
        (
            f"/proxy/{proxy_tool.id}/files/{quote('résumé 路径.txt')}",
            "/files/r%C3%A9sum%C3%A9%20%E8%B7%AF%E5%BE%84.txt",
        ),
        (f"/proxy/{proxy_tool.id}/users/@me", "/users/@me"),
        (f"/proxy/{proxy_tool.id}/a%3Fb", "/a%3Fb"),
    ):
        response = api.get(path)
        assert response.status_code == 200, path
        body_of(response)
        assert up.seen[-1].target == expected


# --- the agent never sees the credential -------------------------------------------------------------


def test_the_credential_echoed_in_headers_and_body_is_stripped(
    api, proxy_tool, granted, up, script, credential
):
    cut = len(credential) // 2
    basic = base64.b64encode(f"user:{credential}".encode()).decode()

    def echo(seen: Seen) -> Reply:
        return Reply(
            headers=[
                ("Content-Type", "application/json"),
                ("X-Echo", seen.headers["authorization"]),
                ("Set-Cookie", f"session={credential}; HttpOnly"),
                ("WWW-Authenticate", f'Basic realm="{credential}"'),
                (f"X-{credential}", "name carries it"),
                ("X-Basic", f"Basic {basic}"),
                ("X-RateLimit-Remaining", "4999"),
            ],
            chunks=[
                b'{"auth": "' + seen.headers["authorization"].encode()[: 7 + cut],
                seen.headers["authorization"].encode()[7 + cut :] + b'", ',
                b'"url": "https://x/?k=' + quote(credential, safe="").encode() + b'", ',
                b'"json": ' + json.dumps({"token": credential}).encode() + b", ",
                b'"b64": "' + basic.encode() + b'"}',
            ],
        )

    script.reply = echo
    response = api.get(f"/proxy/{proxy_tool.id}/echo")
    assert response.status_code == 200
    body = body_of(response)
    headers = "\n".join(f"{k}: {v}" for k, v in response.items())
    assert credential not in headers
    assert credential.encode() not in body
    assert basic.encode() not in body
    assert basic not in headers
    assert "Set-Cookie" not in response
    assert response["X-Echo"] == "Bearer [REDACTED]"
    assert response["X-Upstream-RateLimit-Remaining"] == "4999"
    assert response["X-RateLimit-Limit"] == "60"  # AgentKey's own limit keeps its name
    data = json.loads(body)
    assert data["auth"] == "Bearer [REDACTED]"
    assert data["json"] == {"token": "[REDACTED]"}
    assert data["url"] == "https://x/?k=[REDACTED]"


def test_a_credential_split_across_many_small_chunks_is_stripped(
    api, proxy_tool, granted, up, script, credential
):
    payload = f"start {credential} middle {quote(credential, safe='')} end".encode()
    script.reply = lambda seen: Reply(chunks=[payload[i : i + 3] for i in range(0, len(payload), 3)])
    response = api.get(f"/proxy/{proxy_tool.id}/stream")
    body = body_of(response)
    assert body == b"start [REDACTED] middle [REDACTED] end"


def test_a_gzip_response_is_decoded_before_it_is_stripped(api, proxy_tool, granted, up, script, credential):
    packed = gzip.compress(f'{{"token": "{credential}"}}'.encode())
    script.reply = lambda seen: Reply(
        headers=[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
        chunks=[packed[:10], packed[10:]],
    )
    response = api.get(f"/proxy/{proxy_tool.id}/packed")
    assert json.loads(body_of(response)) == {"token": "[REDACTED]"}
    assert "Content-Encoding" not in response


def test_a_coding_the_proxy_cannot_inspect_is_refused(api, proxy_tool, granted, up, script):
    script.reply = lambda seen: Reply(headers=[("Content-Encoding", "br")], chunks=[b"\x1b\x00"])
    response = api.get(f"/proxy/{proxy_tool.id}/packed")
    assert response.status_code == 502
    assert "content encoding" in response.json()["error"]
    assert proxied_events()[-1].metadata["outcome"] == "encoding_refused"


# --- only the configured origin ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "trick",
    [
        "/evil.example/x",  # //evil.example/x
        "https://evil.example/x",
        "http:evil.example",
        "@evil.example/x",
        "user@evil.example/x",
        "a\\..\\b",
        "..",
        "a/../../etc/passwd",
        "a/./b",
        "%2e%2e/secret",  # arrives decoded as ../secret
        "%252e%252e/secret",  # double-encoded: arrives as %2e%2e
        "a%252fb",
        "a%255cb",
        "%2540evil.example",
        "a/%00b",
        "a%250ab",
        "\uff0f\uff0fevil.example/x",  # fullwidth solidus
        "a/\uff0e\uff0e/b",
        "x" * 9000,
    ],
)
def test_path_tricks_that_could_leave_the_origin_are_refused(api, proxy_tool, granted, up, trick):
    response = api.get(f"/proxy/{proxy_tool.id}/{quote(trick, safe='/:@%')}")
    assert response.status_code == 400, trick
    body = response.json()
    assert body["error"].startswith("The proxy path is refused")
    assert str(proxy_tool.id) in body["hint"]
    assert up.seen == []
    assert proxied_events() == []


def test_a_redirect_to_another_host_is_refused_and_not_followed(api, proxy_tool, granted, up, script):
    script.reply = lambda seen: Reply(
        status=302, headers=[("Location", "https://evil.example/steal")], chunks=[b"x"]
    )
    response = api.get(f"/proxy/{proxy_tool.id}/login")
    assert response.status_code == 502
    body = response.json()
    assert "evil.example" in body["error"]
    assert up.origin in body["hint"]
    assert len(up.seen) == 1
    (event,) = proxied_events()
    assert (event.metadata["status"], event.metadata["outcome"]) == (302, "redirect_refused")


@pytest.mark.parametrize(
    "location",
    ["//evil.example/x", "http://127.0.0.1:1/x", "https://user@{host}/x", "ftp://{host}/x"],
)
def test_redirects_that_only_look_local_are_refused(api, proxy_tool, granted, up, script, location):
    host = up.origin.removeprefix("http://")
    script.reply = lambda seen: Reply(status=307, headers=[("Location", location.format(host=host))])
    response = api.get(f"/proxy/{proxy_tool.id}/go")
    assert response.status_code == 502
    assert len(up.seen) == 1


def test_a_same_origin_redirect_is_rewritten_to_the_proxy(
    api, proxy_tool, granted, up, script, credential, owner
):
    tool_update(tool=proxy_tool, actor=owner, inject_as="query", inject_name="key")
    script.reply = lambda seen: Reply(
        status=302, headers=[("Location", f"{up.origin}/v2/new?page=3&key={credential}")], chunks=[b""]
    )
    response = api.get(f"/proxy/{proxy_tool.id}/v1/old")
    assert response.status_code == 302
    body_of(response)
    assert response["Location"] == f"/proxy/{proxy_tool.id}/v2/new?page=3&key=[REDACTED]"
    script.reply = lambda seen: Reply(status=301, headers=[("Location", "../elsewhere")], chunks=[b""])
    moved = api.get(f"/proxy/{proxy_tool.id}/v1/a/b")
    body_of(moved)
    assert moved["Location"] == f"/proxy/{proxy_tool.id}/v1/elsewhere"
    assert len(up.seen) == 2  # never followed


def test_a_private_origin_is_refused_at_call_time_without_the_loopback_setting(
    api, proxy_tool, granted, up, settings
):
    settings.AGENTKEY_ALLOW_LOOPBACK_URLS = False
    response = api.get(f"/proxy/{proxy_tool.id}/x")
    assert response.status_code == 502
    body = response.json()
    assert body["error"].startswith("The tool's upstream address is refused")
    assert "upstream origin" in body["hint"]
    assert up.seen == []


def test_an_unreachable_upstream_is_502_and_audited(org, agent, api, loopback, operator):
    with upstream(lambda seen: Reply()) as gone:
        origin = gone.origin
    tool = factories.make_tool(org, "Gone API", access_mode="proxy", upstream_origin=origin)
    grant_assign(agent=agent, tool=tool, actor=operator)
    response = api.get(f"/proxy/{tool.id}/x")
    assert response.status_code == 502
    assert response.json()["hint"]
    (event,) = proxied_events()
    assert (event.metadata["status"], event.metadata["outcome"]) == (None, "unreachable")


# --- the grant, checked on every call ---------------------------------------------------------------


def test_revocation_stops_the_very_next_proxied_call(api, proxy_tool, granted, up, operator):
    assert api.get(f"/proxy/{proxy_tool.id}/a").status_code == 200
    grant_revoke(grant=granted, actor=operator)
    refused = api.get(f"/proxy/{proxy_tool.id}/a")
    assert refused.status_code == 403
    assert "revoked" in refused.json()["hint"]
    assert len(up.seen) == 1


def test_suspension_and_key_rotation_stop_the_next_call(
    api, issued, agent, proxy_tool, granted, up, operator
):
    assert api.get(f"/proxy/{proxy_tool.id}/a").status_code == 200
    rotated = agent_key_rotate(agent=agent, actor=operator)
    assert api.get(f"/proxy/{proxy_tool.id}/a").status_code == 401
    fresh = AgentClient(rotated.plaintext)
    assert fresh.get(f"/proxy/{proxy_tool.id}/a").status_code == 200
    agent_suspend(agent=agent, actor=operator)
    assert fresh.get(f"/proxy/{proxy_tool.id}/a").status_code == 403
    assert len(up.seen) == 2


def test_pending_denied_and_expired_grants_get_403_with_a_hint(
    agent, api, proxy_tool, up, operator, approver
):
    assert "Request access first" in api.get(f"/proxy/{proxy_tool.id}/a").json()["hint"]
    grant = grant_request(agent=agent, tool=proxy_tool, reason="I need to read the invoices.")
    assert "pending" in api.get(f"/proxy/{proxy_tool.id}/a").json()["hint"]
    grant_deny(grant=grant, reviewer=approver, reason="Not for this project.")
    assert "denied" in api.get(f"/proxy/{proxy_tool.id}/a").json()["hint"]
    AccessGrant.objects.filter(pk=grant.pk).update(
        status=GrantStatus.APPROVED, denial_reason="", expires_at=timezone.now() - timedelta(seconds=1)
    )
    expired = api.get(f"/proxy/{proxy_tool.id}/a")
    assert expired.status_code == 403
    assert "expired" in expired.json()["hint"]
    assert up.seen == []


def test_strangers_and_anonymous_callers_are_refused(stranger_api, anonymous, proxy_tool, granted, up):
    assert stranger_api.get(f"/proxy/{proxy_tool.id}/a").status_code == 404
    assert anonymous.get(f"/proxy/{proxy_tool.id}/a").status_code == 401
    assert anonymous.get("/proxy/not-a-uuid/a").status_code == 404
    assert up.seen == []


def test_a_vend_mode_tool_is_not_proxied(api, agent, tool, operator):
    grant_assign(agent=agent, tool=tool, actor=operator)
    response = api.get(f"/proxy/{tool.id}/a")
    assert response.status_code == 403
    assert f"/api/tools/{tool.id}/credentials" in response.json()["hint"]


def test_the_vend_refuses_a_proxy_tool_with_the_proxy_url(api, proxy_tool, granted, audit_log):
    response = api.credentials(proxy_tool.id)
    assert response.status_code == 403
    body = response.json()
    assert f"/proxy/{proxy_tool.id}/" in body["hint"]
    assert body["proxy_url"] == f"/proxy/{proxy_tool.id}/"
    assert "credential" not in body
    assert Action.CREDENTIAL_VENDED not in audit_log.actions()


def test_the_catalog_gives_the_proxy_url_of_proxy_tools_only(api, proxy_tool, tool):
    listed = {item["id"]: item for item in api.tools().json()["tools"]}
    assert listed[str(proxy_tool.id)]["proxy_url"] == f"/proxy/{proxy_tool.id}/"
    assert "proxy_url" not in listed[str(tool.id)]


# --- audit -------------------------------------------------------------------------------------------


def test_each_call_is_audited_with_method_path_status_and_duration_only(
    api, agent, proxy_tool, granted, up, script, credential
):
    script.reply = lambda seen: Reply(status=404, chunks=[b'{"error": "no such invoice", "secret_body": 1}'])
    response = call(
        api, "DELETE", f"/proxy/{proxy_tool.id}/v1/invoices/9?force=true", b'{"why": "body text"}'
    )
    assert response.status_code == 404
    body_of(response)
    (event,) = proxied_events()
    assert event.metadata == {
        "tool_id": str(proxy_tool.id),
        "tool_name": proxy_tool.name,
        "grant_id": str(granted.id),
        "method": "DELETE",
        "path": "/v1/invoices/9",
        "status": 404,
        "duration_ms": event.metadata["duration_ms"],
        "outcome": "forwarded",
    }
    assert isinstance(event.metadata["duration_ms"], int)
    assert event.metadata["duration_ms"] >= 0
    assert (event.actor_id, event.agent_id, event.tool_id) == (str(agent.id), agent.id, proxy_tool.id)
    stored = json.dumps(event.metadata)
    assert "force" not in stored
    assert "body text" not in stored
    assert "secret_body" not in stored
    assert credential not in stored


def test_no_audit_row_means_503_and_no_upstream_body(api, proxy_tool, granted, up, script, credential):
    script.reply = lambda seen: Reply(chunks=[b"the upstream's private answer"])
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION test_refuse_proxy_audit() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'audit storage unavailable (test)'; END; $$; "
            "CREATE TRIGGER test_refuse_proxy_audit BEFORE INSERT ON audit_auditevent "
            "FOR EACH ROW EXECUTE FUNCTION test_refuse_proxy_audit();"
        )
    response = api.get(f"/proxy/{proxy_tool.id}/a")
    assert response.status_code == 503
    assert b"private answer" not in body_of(response)
    assert response.json()["hint"]


# --- limits and odd input ----------------------------------------------------------------------------


def test_the_credential_rate_limit_applies(api, proxy_tool, granted, up, settings):
    settings.AGENTKEY_RATELIMITS = {**settings.AGENTKEY_RATELIMITS, "credential": "2/m"}
    assert [api.get(f"/proxy/{proxy_tool.id}/a").status_code for _ in range(2)] == [200, 200]
    refused = api.get(f"/proxy/{proxy_tool.id}/a")
    assert refused.status_code == 429
    assert refused["Retry-After"]
    assert refused["X-RateLimit-Policy"] == "2;w=60"
    assert len(up.seen) == 2


def test_a_body_over_the_cap_is_413_and_not_forwarded(api, proxy_tool, granted, up):
    response = call(
        api, "POST", f"/proxy/{proxy_tool.id}/upload", b"x" * (MAX_BODY + 1), content_type="text/plain"
    )
    assert response.status_code == 413
    assert response.json()["hint"]
    assert up.seen == []


def test_a_large_body_under_the_cap_is_forwarded(api, proxy_tool, granted, up, script):
    script.reply = lambda seen: Reply(chunks=[str(len(seen.body)).encode()])
    size = 3 * 1024 * 1024
    response = call(
        api, "PUT", f"/proxy/{proxy_tool.id}/upload", b"y" * size, content_type="application/octet-stream"
    )
    assert response.status_code == 200
    assert body_of(response) == str(size).encode()


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "CONNECT", "FOO"])
def test_other_methods_are_405_not_500(api, proxy_tool, granted, up, method):
    response = call(api, method, f"/proxy/{proxy_tool.id}/a")
    assert response.status_code == 405
    assert response.json()["hint"]
    assert up.seen == []


def test_an_accept_header_the_api_cannot_render_is_still_forwarded(api, proxy_tool, granted, up, script):
    script.reply = lambda seen: Reply(headers=[("Content-Type", "image/png")], chunks=[b"\x89PNG"])
    response = api.get(f"/proxy/{proxy_tool.id}/logo.png", Accept="image/png")
    assert response.status_code == 200
    assert body_of(response) == b"\x89PNG"
    assert response["Content-Type"] == "image/png"


def test_a_browser_origin_is_refused(api, proxy_tool, granted, up):
    response = api.get(f"/proxy/{proxy_tool.id}/a", Origin="https://evil.example")
    assert response.status_code == 403
    assert up.seen == []
