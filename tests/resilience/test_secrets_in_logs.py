"""Secrets never reach a log line or an error body, malformed input included (issue 8, item 7).

The Vault/OpenBao class of bug: a request that fails to parse is logged or
echoed whole, credential and all. Here every odd request carries the agent key
and a stored credential; the responses and every log record are searched for
them (on top of the session-wide secret watch, which searches the whole run).
"""

from __future__ import annotations

import logging

import pytest
from django.test import Client

from agentkey.core.logging import RedactSecretsFilter, redact
from grants.services import grant_assign

pytestmark = pytest.mark.django_db

PROVIDER_SHAPED = [
    "ghp_" + "A1b2C3d4" * 5,
    "github_pat_" + "11ABCDEFG0" * 4,
    "xoxb-2048-4096-" + "aBcD" * 6,
    "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "AKIAIOSFODNN7EXAMPLE",
    "glpat-" + "x" * 20,
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
]


@pytest.mark.parametrize("secret", PROVIDER_SHAPED)
def test_a_provider_shaped_credential_is_redacted_from_a_log_record(secret):
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "upstream said %s", (secret,), None)
    RedactSecretsFilter().filter(record)
    assert secret not in record.getMessage()
    assert "[REDACTED]" in record.getMessage()


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("password=hunter2hunter2", "hunter2hunter2"),
        ('{"client_secret": "s3cr3t-value"}', "s3cr3t-value"),
        ("api-key: abcdefgh12345", "abcdefgh12345"),
        ("headers={'Authorization': 'Basic dXNlcjpwYXNzd29yZA=='}", "dXNlcjpwYXNzd29yZA=="),
    ],
)
def test_a_value_labelled_as_a_secret_is_redacted(line, value):
    assert value not in redact(line)


def test_ordinary_log_lines_are_left_alone():
    for line in ("credential.vended tool=Linear grant=3f1c", "request failed closed: OperationalError"):
        assert redact(line) == line


def test_an_exception_traceback_is_redacted_before_any_handler_formats_it():
    key = "sk_agent_" + "Zz9_" * 10
    try:
        raise ValueError(f"could not parse {key}")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), __import__("sys").exc_info())
    RedactSecretsFilter().filter(record)
    assert record.exc_info is None
    assert key not in (record.exc_text or "")


def test_malformed_requests_carrying_secrets_echo_them_nowhere(
    api, agent, tool, credential, operator, caplog
):
    grant_assign(agent=agent, tool=tool, actor=operator)
    caplog.set_level(logging.DEBUG)
    client = Client(raise_request_exception=False)
    auth = {"Authorization": f"Bearer {api.key}"}
    bodies = [
        ("application/json", f'{{"name": "{credential}", "reason": '),  # truncated JSON
        (
            "application/json",
            f'{{"name": "{credential}\udcff", "reason": "x"}}'.encode("utf-8", "surrogatepass"),
        ),
        ("application/json", b"\xff\xfe" + credential.encode()),  # not UTF-8
        ("text/plain", f"name={credential}&key={api.key}"),  # wrong content type
        ("application/json", '{"name": "' + credential + "x" * 9000 + '"}'),  # over the body cap
        ("application/json", f'{{"name": {{"nested": "{credential}"}}, "url": "{api.key}", "reason": 5}}'),
    ]
    responses = [
        client.post("/api/tools/suggest", data=body, content_type=ctype, headers=auth)
        for ctype, body in bodies
    ]
    responses += [
        client.get(f"/api/tools/{credential}/credentials", headers=auth),  # a secret in the path
        client.get(f"/api/tools?q={credential}", headers={"Authorization": f"Bearer {api.key}x"}),  # bad key
        client.get("/api/me", headers={"Authorization": f"Basic {credential}"}),
        client.get("/api/me", headers={"Authorization": f"Bearer {credential}\x00"}),
    ]
    for response in responses:
        assert response.status_code in (400, 401, 404, 413, 415), response.status_code
        assert set(response.json()) <= {"error", "hint", "details", "limit"}, "the documented error body"
        assert credential not in response.content.decode("utf-8", "replace")
        assert api.key not in response.content.decode("utf-8", "replace")
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert credential not in logged
    assert api.key not in logged
