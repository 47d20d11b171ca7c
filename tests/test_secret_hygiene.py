"""The secret watch can fail, the log redaction works, and a bug still answers in the error shape."""

from __future__ import annotations

import logging

import pytest
from django.test import Client

import grants.services.agents
from agentkey.core.logging import RedactSecretsFilter, redact
from grants.services import grant_assign
from tests.support.secret_watch import WATCH, SecretWatch


def test_the_watch_finds_a_leak_in_a_log_or_a_response():
    watch = SecretWatch()
    watch.register("cred_0123456789abcdef")
    watch.record("log x", "all good")
    watch.record_response(
        "GET", "/api/tools/abc/credentials", 200, "", b'{"credential": "cred_0123456789abcdef"}'
    )
    assert watch.leaks() == [], "the vend body is the one place a credential may appear"
    watch.record_response("GET", "/api/tools/abc/credentials", 403, "", b"cred_0123456789abcdef")
    watch.record("log y", "oops cred_0123456789abcdef")
    assert [where for where, _ in watch.leaks()] == ["GET /api/tools/abc/credentials -> 403", "log y"]


@pytest.mark.django_db
def test_the_watch_is_wired_into_this_run(api, tool, credential):
    assert credential in WATCH.secrets, "vault plaintexts are registered"
    assert api.key in WATCH.secrets, "generated agent keys are registered"
    before = len(WATCH.corpus)
    api.tools()
    assert len(WATCH.corpus) > before, "test-client responses are recorded"


def test_log_redaction_of_agent_keys_and_bearer_headers():
    key = "sk_agent_" + "Ab1-_" * 7
    assert key not in redact(f"failed for {key} today")
    assert "sekret-token" not in redact("headers={'Authorization': 'Bearer sekret-token'}")
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "key %s", (key,), None)
    RedactSecretsFilter().filter(record)
    assert key not in record.getMessage()


@pytest.mark.django_db
def test_an_unexpected_bug_is_a_json_500_without_the_secret(api, agent, tool, operator, monkeypatch):
    grant_assign(agent=agent, tool=tool, actor=operator)

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(grants.services.agents, "secret_reveal", broken)
    client = Client(raise_request_exception=False)
    response = client.get(f"/api/tools/{tool.id}/credentials", headers={"Authorization": f"Bearer {api.key}"})
    assert response.status_code == 500
    assert set(response.json()) == {"error", "hint"}
    assert "X-Request-ID" in response.json()["hint"]
