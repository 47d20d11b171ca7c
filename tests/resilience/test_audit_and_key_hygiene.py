"""Two Vault/OpenBao failure classes: secrets in audit fields, and timing leaks in key checks."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from django.db.models import CharField, TextField

from accounts.models import AgentKey
from accounts.services import agent_key_rotate
from audit.models import AuditEvent
from catalog.services import tool_rotate_credential
from grants.services import grant_assign
from tests import factories
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db


def test_no_audit_row_holds_a_credential_or_an_agent_key(org, issued, tool, credential, operator, owner):
    grant_assign(agent=issued.agent, tool=tool, actor=operator)
    api = AgentClient(issued.key.plaintext)
    assert api.credentials(tool.id).status_code == 200
    rotated = factories.new_credential("lin_api")
    tool_rotate_credential(tool=tool, actor=owner, credential=rotated)
    assert api.credentials(tool.id).json()["credential"] == rotated
    new_key = agent_key_rotate(agent=issued.agent, actor=owner)
    assert AgentClient(new_key.plaintext).request_access(tool.id).status_code == 409
    assert AgentClient(issued.key.plaintext + "x").tools().status_code == 401
    rows = list(AuditEvent.objects.values())
    assert len(rows) >= 6
    dump = json.dumps(rows, default=str)
    for secret in (credential, rotated, issued.key.plaintext, new_key.plaintext):
        assert secret not in dump, "audit rows name what happened, never the secret itself"


def test_agent_keys_are_stored_only_as_digests():
    text_columns = [f.name for f in AgentKey._meta.get_fields() if isinstance(f, CharField | TextField)]
    assert "plaintext" not in text_columns
    assert not [name for name in text_columns if "key" in name and name not in {"key_hash", "prefix"}]


def test_the_key_check_is_a_digest_lookup_then_a_constant_time_compare(issued, monkeypatch):
    """No comparison of the presented key with stored plaintext, character by character:
    the row is found by the SHA-256 of the presented key (an index probe whose timing
    does not depend on how many leading characters match) and confirmed with
    hmac.compare_digest."""
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # accounts.services calls hmac.compare_digest
    assert AgentClient(issued.key.plaintext).tools().status_code == 200
    digest = hashlib.sha256(issued.key.plaintext.encode()).hexdigest()
    assert (digest, digest) in compared
    assert not [pair for pair in compared if issued.key.plaintext in pair], "plaintext is never compared"
    near = issued.key.plaintext[:-1] + ("a" if issued.key.plaintext[-1] != "a" else "b")
    refusals = {AgentClient(k).tools().content for k in (near, "sk_agent_" + "z" * 40)}
    assert len(refusals) == 1, "a near miss and a wild guess get the same answer"
