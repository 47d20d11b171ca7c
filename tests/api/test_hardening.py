"""Inputs and paths found in review: each used to misbehave."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AgentKey
from accounts.services import agent_suspend
from agentkey.core.api import API_CSP
from audit.models import Action, AuditEvent
from catalog.models import GuideSuggestion, ToolSuggestion
from grants.services import grant_assign
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db


def test_a_name_that_grows_when_lowercased_is_accepted_not_503(api):
    response = api.suggest("İ" * 70)
    assert response.status_code == 201, response.content
    assert len(ToolSuggestion.objects.get().normalized_name) <= 120


def test_an_internationalized_url_too_long_once_encoded_is_a_400(api):
    url = "https://" + ".".join(["ü"] * 120) + ".com"
    response = api.suggest("Umlauts", url=url)
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "url"


def test_long_non_latin_guide_suggestions_are_stored_and_merged(org, api, agent, tool, operator):
    grant_assign(agent=agent, tool=tool, actor=operator)
    # 1,998 characters (about 6,000 bytes of UTF-8), no ASCII letters; with the two spaces the
    # second one is exactly at the 2,000-character limit, which holds for the text as sent.
    text = ("项目的密钥是平台" * 250)[:-2]

    def suggest(learned: str):
        body = json.dumps({"learned": learned, "why": "Saves the next agent an hour."}, ensure_ascii=False)
        return api.post(f"/api/tools/{tool.id}/instructions/suggest", raw=body.encode())

    first = suggest(text)
    assert first.status_code == 201, first.content
    again = suggest(" " + text + " ")
    assert again.json()["existing"] is True
    assert GuideSuggestion.objects.count() == 1


def test_a_revocation_stamp_in_the_future_still_refuses(issued):
    AgentKey.objects.filter(pk=issued.key.key.pk).update(revoked_at=timezone.now() + timedelta(seconds=30))
    assert AgentClient(issued.key.plaintext).me().status_code == 401


def test_a_suspended_agent_cannot_flood_the_audit_log(api, agent, operator, audit_log):
    agent_suspend(agent=agent, actor=operator)
    audit_log.mark()
    for _ in range(20):
        assert api.me().status_code == 403
    assert audit_log.actions() == [Action.AUTH_REJECTED_SUSPENDED]


def test_early_refusals_carry_rate_limit_headers_and_are_counted(settings):
    settings.AGENTKEY_RATELIMITS = {**settings.AGENTKEY_RATELIMITS, "preauth": "2/m"}
    client = AgentClient(None)
    first = client.post("/api/tools/not-a-uuid/request", {"reason": "because"})
    assert first.status_code == 404
    assert first["X-RateLimit-Remaining"] == "1"
    foreign = client.get("/api/tools/not-a-uuid/credentials", Origin="https://evil.example")
    assert foreign.status_code == 403
    assert "X-RateLimit-Limit" in foreign
    assert client.get("/api/tools/not-a-uuid/credentials").status_code == 429


def test_head_on_the_vend_is_refused_and_audits_nothing(api, agent, tool, operator):
    grant_assign(agent=agent, tool=tool, actor=operator)
    before = AuditEvent.objects.filter(action=Action.CREDENTIAL_VENDED).count()
    response = api.client.head(f"/api/tools/{tool.id}/credentials", headers=api._headers({}))
    assert response.status_code == 405
    assert AuditEvent.objects.filter(action=Action.CREDENTIAL_VENDED).count() == before


def test_agent_api_answers_carry_a_constant_policy_that_lets_nothing_load_and_pages_keep_theirs(
    api, agent, tool, operator, client
):
    grant_assign(agent=agent, tool=tool, actor=operator)
    answers = [
        api.credentials(tool.id),
        api.tools(),
        AgentClient("sk_agent_" + "x" * 40).tools(),  # refused before authentication succeeds
    ]
    assert [a.status_code for a in answers] == [200, 200, 401]
    for answer in answers:
        assert answer["Content-Security-Policy"] == API_CSP
    assert "default-src 'none'" in API_CSP
    assert "frame-ancestors 'none'" in API_CSP
    # The sign-in page still gets the pages' policy (built by django-csp from the settings).
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert "default-src 'self'" in page["Content-Security-Policy"]
    assert "script-src 'self'" in page["Content-Security-Policy"]
