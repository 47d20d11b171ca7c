"""A vend racing an approval and then a revocation sees one consistent state (issue 8, item 6).

The vend loop runs in its own thread and its own database connection while
the approver decides; the answers must read as one timeline: refused while
pending, credentials once approved, refused from the call after the revoke,
and one credential.vended row for every credential that left.
"""

from __future__ import annotations

import re
import threading

import pytest
from django.db import connection

from audit.models import Action, AuditEvent
from grants.models import AccessGrant, GrantStatus
from grants.services import grant_approve, grant_request, grant_revoke
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db(transaction=True)


def _wait(seen: list[tuple[int, str]], n: int) -> None:
    deadline = threading.Event()
    for _ in range(3000):
        if len(seen) >= n:
            return
        deadline.wait(0.01)
    raise AssertionError(f"the vend loop stalled at {len(seen)} calls")


def test_a_vend_racing_approval_then_revocation_sees_one_timeline(issued, tool, credential, approver):
    grant = grant_request(agent=issued.agent, tool=tool, reason="Filing the release bugs.")
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def vend_loop() -> None:
        client = AgentClient(issued.key.plaintext)
        try:
            while not stop.is_set():
                response = client.credentials(tool.id)
                body = response.json()
                if response.status_code == 200:
                    assert body["credential"] == credential
                else:
                    assert "credential" not in body
                seen.append((response.status_code, body.get("hint", "")))
        finally:
            connection.close()

    worker = threading.Thread(target=vend_loop)
    worker.start()
    try:
        _wait(seen, 5)
        before_approval = len(seen)
        grant_approve(grant=grant, reviewer=approver)
        after_approval = len(seen)  # the call at this index may have started before the commit
        _wait(seen, after_approval + 10)
        before_revoke = len(seen)
        grant_revoke(grant=AccessGrant.objects.get(pk=grant.pk), actor=approver)
        after_revoke = len(seen)
        _wait(seen, after_revoke + 5)
    finally:
        stop.set()
        worker.join(timeout=30)

    timeline = "".join({200: "v", 403: "r"}[status] for status, _ in seen)
    assert re.fullmatch(r"r+v+r+", timeline), f"one approval and one revoke give one timeline: {timeline}"
    first_vend, last_vend = timeline.index("v"), timeline.rindex("v")
    # Calls answered before the decision began saw the old state; a call that started after the
    # decision committed sees the new one; only the one call in flight at the commit may see either.
    assert before_approval <= first_vend <= after_approval + 1, "the approval applies from the next call"
    assert before_revoke - 1 <= last_vend <= after_revoke, "the revoke applies from the next call"
    assert seen[0][1] != seen[-1][1], "the refusals say pending, then revoked"
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.REVOKED
    rows = AuditEvent.objects.filter(action=Action.CREDENTIAL_VENDED, actor_id=str(issued.agent.id)).count()
    assert rows == timeline.count("v"), "every credential that left has its audit row, and no other"
