"""Races that must resolve to one consistent outcome (real threads, real transactions)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from django.db import connection

from accounts.models import Role
from agentkey.core.errors import Conflict
from audit.models import Action, AuditEvent
from catalog.models import ToolSuggestion
from grants.models import AccessGrant, GrantStatus
from grants.services import grant_approve, grant_assign, grant_deny, grant_request, grant_revoke
from tests import factories
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db(transaction=True)


def run_together(*jobs: Callable[[], Any]) -> list[Any]:
    """Start every job at the same instant; return each one's result or exception."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def runner(i: int, job: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[i] = job()
        except Exception as exc:  # noqa: BLE001
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_two_approvers_deciding_at_once_make_exactly_one_decision(org, tool, agent):
    first = factories.make_member(org, Role.APPROVER)
    second = factories.make_member(org, Role.ADMIN)
    for _ in range(5):
        grant = grant_request(agent=agent, tool=tool, reason="Need it for the release.")
        mark = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
        results = run_together(
            partial(grant_approve, grant=grant, reviewer=first),
            partial(grant_deny, grant=grant, reviewer=second, reason="Not for this quarter."),
        )
        conflicts = [r for r in results if isinstance(r, Conflict)]
        decided = [r for r in results if isinstance(r, AccessGrant)]
        assert (len(conflicts), len(decided)) == (1, 1), results
        final = AccessGrant.objects.get(pk=grant.pk)
        assert final.status == decided[0].status
        decisions = AuditEvent.objects.filter(
            id__gt=mark, target_id=str(grant.id), action__in=[Action.GRANT_APPROVED, Action.GRANT_DENIED]
        ).count()
        assert decisions == 1
        if final.status == GrantStatus.APPROVED:
            grant_revoke(grant=final, actor=first)


def test_parallel_requests_for_the_same_tool_make_one_grant(org, tool, agent):
    client_key = factories.make_agent(org).key.plaintext
    results = run_together(*[lambda: AgentClient(client_key).request_access(tool.id).status_code] * 6)
    assert sorted(results) == [201, 409, 409, 409, 409, 409]
    assert AccessGrant.objects.filter(tool=tool).count() == 1


def test_many_agents_suggesting_the_same_tool_at_once_make_one_suggestion(org):
    keys = [factories.make_agent(org, f"agent-{i}").key.plaintext for i in range(50)]
    spellings = ["Linear", "linear", "LINEAR app", "Linear"]
    jobs = [
        (
            lambda key=key, i=i: (
                AgentClient(key).suggest(spellings[i % 4], url="https://linear.app").status_code
            )
        )
        for i, key in enumerate(keys)
    ]
    results = run_together(*jobs)
    assert results == [201] * 50
    suggestion = ToolSuggestion.objects.get()
    assert suggestion.backers.count() == 50
    assert AuditEvent.objects.filter(action=Action.TOOL_SUGGESTION_CREATED).count() == 1
    assert AuditEvent.objects.filter(action=Action.TOOL_SUGGESTION_SUPPORTED).count() == 49


def test_a_vend_racing_a_revoke_sees_one_consistent_state(org, tool, agent, credential, operator):
    key = factories.make_agent(org, "racer")
    grant = grant_assign(agent=key.agent, tool=tool, actor=operator)
    seen: list[int] = []
    stop = threading.Event()

    def vend_loop() -> None:
        client = AgentClient(key.key.plaintext)
        try:
            while not stop.is_set():
                response = client.credentials(tool.id)
                seen.append(response.status_code)
                if response.status_code == 200:
                    assert response.json()["credential"] == credential
        finally:
            connection.close()

    worker = threading.Thread(target=vend_loop)
    worker.start()
    while len(seen) < 5:
        threading.Event().wait(0.01)
    grant_revoke(grant=grant, actor=operator)
    after_revoke = len(seen)
    while len(seen) < after_revoke + 5:
        threading.Event().wait(0.01)
    stop.set()
    worker.join(timeout=30)
    assert set(seen) <= {200, 403}
    first_refusal = seen.index(403)
    assert all(code == 403 for code in seen[first_refusal:]), "never a credential after the first refusal"
    assert first_refusal <= after_revoke + 1, "the revoke applies on the very next call"
    vends = AuditEvent.objects.filter(action=Action.CREDENTIAL_VENDED, actor_id=str(key.agent.id)).count()
    assert vends == seen.count(200), "every credential that left has its audit row"
