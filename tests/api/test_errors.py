"""Every error path of DESIGN §4 answers its documented status and body."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.services import agent_key_rotate, agent_suspend
from audit.models import Action
from grants.models import GrantStatus
from grants.services import grant_approve, grant_assign, grant_deny, grant_revoke
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db

MISSING_BEARER = "Missing bearer token."
INVALID_KEY = "Invalid API key."
NOT_APPROVED = "This tool has not been approved for the agent."


def assert_error(response, status: int, error: str | None = None):
    assert response.status_code == status, response.content[:400]
    body = response.json()
    assert set(body) >= {"error", "hint"}
    assert body["error"]
    assert body["hint"], "every error says what to do next"
    if error is not None:
        assert body["error"] == error
    return body


# --- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["", "Basic abc", "Bearer", "Bearer    ", "sk_agent_abc"])
def test_missing_or_malformed_bearer_is_401(tool, header):
    client = AgentClient(None)
    response = client.get("/api/tools", **({"Authorization": header} if header else {}))
    body = assert_error(response, 401, MISSING_BEARER)
    assert "Authorization" in body["hint"]
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("key", ["sk_agent_" + "A" * 32, "nonsense", "sk_agent_\u00e9\u00e9", "x" * 5000])
def test_unknown_key_is_401(key):
    assert_error(AgentClient(key).get("/api/me"), 401, INVALID_KEY)


def test_rotated_out_key_is_refused_at_once(issued, operator):
    old = AgentClient(issued.key.plaintext)
    new = agent_key_rotate(agent=issued.agent, actor=operator)
    assert_error(old.get("/api/me"), 401, "This API key has been rotated out.")
    assert AgentClient(new.plaintext).get("/api/me").status_code == 200


def test_rotated_key_with_grace_works_until_the_grace_ends(issued, operator, time_machine):
    old = AgentClient(issued.key.plaintext)
    agent_key_rotate(agent=issued.agent, actor=operator, grace=timedelta(hours=1))
    assert old.get("/api/me").status_code == 200
    time_machine.move_to(timezone.now() + timedelta(hours=1, seconds=1))
    assert_error(old.get("/api/me"), 401, "This API key has expired.")


def test_expired_key_is_401(org, time_machine):
    from tests.factories import make_agent

    issued = make_agent(org, key_expires_at=timezone.now() + timedelta(days=1))
    client = AgentClient(issued.key.plaintext)
    assert client.get("/api/me").status_code == 200
    time_machine.move_to(timezone.now() + timedelta(days=1, seconds=1))
    assert_error(client.get("/api/me"), 401, "This API key has expired.")


def test_suspended_agent_is_403_and_the_attempt_is_audited(api, agent, tool, operator, audit_log):
    agent_suspend(agent=agent, actor=operator)
    audit_log.mark()
    for response in (api.tools(), api.me(), api.credentials(tool.id), api.request_access(tool.id)):
        assert_error(response, 403, "This agent has been suspended.")
    assert set(audit_log.actions()) == {Action.AUTH_REJECTED_SUSPENDED}


# --- ids, scoping --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/tools/not-a-uuid/request",
        "/api/tools/123/credentials",
        "/api/tools/%27%3B--/instructions/suggest",
        "/api/tools/" + "9" * 300 + "/credentials",
    ],
)
def test_non_uuid_ids_are_404_before_authentication(path):
    method = "get" if path.endswith("credentials") else "post"
    response = getattr(AgentClient(None), method)(path)
    body = assert_error(response, 404, "Tool ID is not a valid identifier.")
    assert "GET /api/tools" in body["hint"]


def test_another_organizations_agent_gets_404_for_every_tool_id_on_every_endpoint(
    tool, per_agent_tool, stranger_api, agent, operator
):
    grant_assign(agent=agent, tool=tool, actor=operator)
    for tool_id in (tool.id, per_agent_tool.id):
        assert_error(stranger_api.request_access(tool_id), 404, "Tool not found.")
        assert_error(stranger_api.credentials(tool_id), 404, "Tool not found.")
        assert_error(
            stranger_api.suggest_instructions(tool_id, "The project key is ACME."), 404, "Tool not found."
        )
        listed = [t["id"] for t in stranger_api.tools().json()["tools"]]
        assert str(tool_id) not in listed
    assert stranger_api.me().json()["tools_available"] == 0


def test_a_random_uuid_is_404(api):
    for response in (
        api.request_access(uuid.uuid4()),
        api.credentials(uuid.uuid4()),
        api.suggest_instructions(uuid.uuid4(), "Something I learned about it."),
    ):
        assert_error(response, 404, "Tool not found.")


def test_unknown_api_path_is_json_404(api):
    response = api.get("/api/nothing-here")
    assert_error(response, 404)
    assert response["Content-Type"].startswith("application/json")


def test_wrong_method_is_405_with_the_allowed_ones(api, tool):
    response = api.client.delete(f"/api/tools/{tool.id}/credentials", headers=api._headers({}))
    body = assert_error(response, 405)
    assert "GET" in body["hint"]


# --- grant states --------------------------------------------------------------------------------


def test_requesting_twice_is_409_pending(api, tool):
    first = api.request_access(tool.id)
    body = assert_error(api.request_access(tool.id), 409, "You already have a pending request for this tool.")
    assert body["request_id"] == first.json()["request_id"]


def test_requesting_when_approved_is_409_with_the_credentials_path(api, agent, tool, operator):
    grant_assign(agent=agent, tool=tool, actor=operator)
    body = assert_error(api.request_access(tool.id), 409, "You already have access to this tool.")
    assert f"/api/tools/{tool.id}/credentials" in body["hint"]


@pytest.mark.parametrize("state", ["none", "pending", "denied", "revoked", "expired"])
def test_vend_refusal_hint_depends_on_the_state(api, agent, tool, approver, state, time_machine):
    hints = {
        "none": f"Request access first via POST /api/tools/{tool.id}/request with a reason.",
        "pending": "Your request is pending human review. Check status via GET /api/tools.",
        "denied": "Your request was denied. Check GET /api/tools for the denial_reason. "
        "You can submit a new request with a different justification.",
        "revoked": f"Your access was revoked. Submit a new request via POST /api/tools/{tool.id}/request.",
        "expired": f"Your access expired. Submit a new request via POST /api/tools/{tool.id}/request.",
    }
    if state != "none":
        from grants.models import AccessGrant

        api.request_access(tool.id)
        grant = AccessGrant.objects.get(agent=agent, tool=tool)
        if state == "denied":
            grant_deny(grant=grant, reviewer=approver, reason="Use the shared bot account instead.")
        elif state == "revoked":
            grant_revoke(grant=grant_approve(grant=grant, reviewer=approver), actor=approver)
        elif state == "expired":
            grant_approve(grant=grant, reviewer=approver, expires_at=timezone.now() + timedelta(hours=1))
            time_machine.move_to(timezone.now() + timedelta(hours=1, seconds=1))
    body = assert_error(api.credentials(tool.id), 403, NOT_APPROVED)
    assert body["hint"] == hints[state]


def test_a_denied_agent_sees_the_reason_and_can_ask_again(api, agent, tool, approver):
    from grants.models import AccessGrant

    api.request_access(tool.id)
    grant = AccessGrant.objects.get(agent=agent, tool=tool)
    grant_deny(grant=grant, reviewer=approver, reason="Use the shared bot account instead.")
    listed = next(t for t in api.tools().json()["tools"] if t["id"] == str(tool.id))
    assert listed == {
        "id": str(tool.id),
        "name": tool.name,
        "description": tool.description,
        "your_access": "denied",
        "denial_reason": "Use the shared bot account instead.",
    }
    assert api.me().json()["tools_denied"] == [
        {"name": "Linear", "reason": "Use the shared bot account instead."}
    ]
    again = api.request_access(tool.id, "I only need read access to triage.")
    assert again.status_code == 201
    assert again.json()["request_id"] == str(grant.id), "one grant row per (agent, tool), reused"
    grant.refresh_from_db()
    assert (grant.status, grant.denial_reason) == (GrantStatus.PENDING, "")


def test_vend_of_a_shared_tool_without_a_credential_is_409_with_a_hint(org, api, agent, operator):
    from tests.factories import make_tool

    bare = make_tool(org, "Notion", with_credential=False)
    grant_assign(agent=agent, tool=bare, actor=operator)
    body = assert_error(api.credentials(bare.id), 409, "Credential is not configured.")
    assert "admin" in body["hint"]


# --- bodies --------------------------------------------------------------------------------------


def test_wrong_content_type_is_415(api, tool):
    response = api.post(f"/api/tools/{tool.id}/request", raw="reason=because", content_type="text/plain")
    assert_error(response, 415, "Expected an application/json request body.")


def test_form_encoded_body_is_415(api, tool):
    response = api.post(
        f"/api/tools/{tool.id}/request",
        raw="reason=because+I+need+it",
        content_type="application/x-www-form-urlencoded",
    )
    assert_error(response, 415)


def test_body_over_8_kib_is_413_and_exactly_8_kib_is_read(api, tool):
    padding = 8192 - len(json.dumps({"reason": "x" * 10, "pad": ""}))
    exact = json.dumps({"reason": "x" * 10, "pad": "p" * padding})
    assert len(exact.encode()) == 8192
    assert api.post(f"/api/tools/{tool.id}/request", raw=exact).status_code == 201
    too_big = json.dumps({"reason": "x" * 10, "pad": "p" * (padding + 1)})
    body = assert_error(api.post("/api/tools/suggest", raw=too_big), 413, "Request body is too large.")
    assert "8192" in body["hint"]


@pytest.mark.parametrize(
    "raw",
    [
        "{",
        "not json",
        '{"reason": NaN}',
        '{"reason": Infinity}',
        "\xff\xfe",
        '{"reason": "a"}{"x":1}',
        "[" * 5000,
    ],
)
def test_malformed_json_is_400(api, tool, raw):
    assert_error(api.post(f"/api/tools/{tool.id}/request", raw=raw), 400, "Malformed JSON request body.")


@pytest.mark.parametrize("raw", ["[]", "null", "5", '"reason"'])
def test_json_that_is_not_an_object_is_400(api, tool, raw):
    assert_error(
        api.post(f"/api/tools/{tool.id}/request", raw=raw), 400, "The request body must be a JSON object."
    )


def test_lone_surrogate_is_400_not_500(api, tool):
    response = api.post(f"/api/tools/{tool.id}/request", raw='{"reason": "because \\ud800 of this"}')
    assert_error(response, 400)


def test_nul_character_is_400(api, tool):
    response = api.post(f"/api/tools/{tool.id}/request", {"reason": "because \u0000 of this"})
    body = assert_error(response, 400)
    assert body["details"][0]["field"] == "reason"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "reason"),
        ({"reason": "abc"}, "reason"),
        ({"reason": "x" * 501}, "reason"),
        ({"reason": 42}, "reason"),
        ({"reason": None}, "reason"),
        ({"reason": "Need it for triage.", "duration": "forever"}, "duration"),
        ({"reason": "Need it for triage.", "duration": "90d"}, "duration"),
        ({"reason": "Need it for triage.", "duration": "10m"}, "duration"),
    ],
)
def test_validation_errors_name_the_field(api, tool, body, field):
    response = api.post(f"/api/tools/{tool.id}/request", body)
    result = assert_error(response, 400)
    assert result["error"].startswith("Validation error: ")
    assert result["error"].endswith(f"(field: {field}).")
    assert result["details"][0]["field"] == field
    assert "GET on the same endpoint" in result["hint"]


def test_a_requested_duration_is_kept_and_applied_at_approval(api, agent, tool, approver):
    from grants.models import AccessGrant

    assert api.request_access(tool.id, duration="8h").status_code == 201
    grant = AccessGrant.objects.get(agent=agent, tool=tool)
    assert grant.requested_duration == timedelta(hours=8)
    before = timezone.now()
    grant = grant_approve(grant=grant, reviewer=approver)
    assert grant.expires_at is not None
    assert before + timedelta(hours=8) <= grant.expires_at <= timezone.now() + timedelta(hours=8)
    assert api.credentials(tool.id).json()["expires_at"].endswith("Z")


# --- CORS ----------------------------------------------------------------------------------------


def test_credentials_from_a_foreign_browser_origin_are_403_before_anything_else(api, agent, tool, operator):
    grant_assign(agent=agent, tool=tool, actor=operator)
    body = assert_error(
        api.credentials(tool.id, Origin="https://evil.example"),
        403,
        "Cross-origin browser requests are not allowed.",
    )
    assert "AGENT_CORS_ORIGINS" in body["hint"]
    assert_error(
        AgentClient(None).get("/api/tools/not-a-uuid/credentials", Origin="https://evil.example"), 403
    )


def test_credentials_from_an_allowed_origin_carry_cors_headers(api, agent, tool, operator, settings):
    settings.AGENT_CORS_ORIGINS = ["https://agents.example"]
    settings.CORS_ALLOWED_ORIGINS = ["https://agents.example"]
    grant_assign(agent=agent, tool=tool, actor=operator)
    response = api.credentials(tool.id, Origin="https://agents.example")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://agents.example"


# --- schema discovery ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/api/tools/{id}/request", {"reason", "duration"}),
        ("/api/tools/suggest", {"name", "url", "reason"}),
        ("/api/tools/{id}/instructions/suggest", {"learned", "why"}),
    ],
)
def test_get_on_a_post_endpoint_returns_its_schema_without_auth(tool, path, fields):
    response = AgentClient(None).get(path.format(id=tool.id))
    assert response.status_code == 200
    schema = response.json()["schema"]
    assert schema["method"] == "POST"
    assert set(schema["body"]) == fields
    for spec in schema["body"].values():
        assert spec["type"] == "string"
        assert isinstance(spec["required"], bool)
        assert spec["description"]
        assert "example" in spec


def test_the_schema_matches_the_validation_that_runs(api, tool):
    schema = AgentClient(None).get(f"/api/tools/{tool.id}/request").json()["schema"]["body"]["reason"]
    too_short = "x" * (schema["min_length"] - 1)
    just_right = "x" * schema["min_length"]
    assert api.request_access(tool.id, too_short).status_code == 400
    assert api.request_access(tool.id, just_right).status_code == 201


def test_openapi_document_and_docs_are_served(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    document = json.loads(schema.content)
    paths = set(document["paths"])
    assert {
        "/api/tools",
        "/api/me",
        "/api/tools/suggest",
        "/api/tools/{tool_id}/request",
        "/api/tools/{tool_id}/credentials",
        "/api/tools/{tool_id}/instructions/suggest",
    } <= paths
    assert client.get("/api/docs/").status_code == 200


def test_openapi_document_is_valid_and_generates_without_warnings():
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out)
    document = json.loads(out.getvalue())
    assert document["components"]["securitySchemes"]["agentKey"]["scheme"] == "bearer"
    credential = document["paths"]["/api/tools/{tool_id}/credentials"]["get"]
    assert credential["parameters"][0]["schema"]["format"] == "uuid"
    assert {"200", "401", "403", "404", "429"} <= set(credential["responses"])
