"""Access reviews (docs/governance.md): approved access older than the organization's review age
enters the queue; a decider recertifies or revokes it; unreviewed past the grace period it is
revoked — end to end, through the jobs (with an explicit ``now``), the console, the agent API and
the notification pipeline to a real HTTP receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.lifecycle import org_set_lifecycle_policy
from accounts.models import Role
from agentkey.core.errors import Conflict, Forbidden
from audit.models import Action, AuditEvent
from audit.services import audit_record
from grants.models import AccessGrant, GrantStatus
from grants.reviews import NOT_UNDER_REVIEW, grant_recertify, grant_review_revoke, grants_review_due
from grants.services import grant_approve, grant_assign, grant_request
from notifications.models import Delivery, DeliveryStatus, Event
from tests import factories
from tests.grants.test_concurrency import run_together
from tests.notifications.conftest import connect, receiver, run
from tests.support.servers import Server
from vault.models import Secret

pytestmark = pytest.mark.django_db

AFTER, GRACE = timedelta(days=30), timedelta(days=7)
REVIEW_EVENTS = [str(Event.ACCESS_REVIEW_DUE), str(Event.ACCESS_REVIEW_EXPIRED)]


@pytest.fixture
def reviews_on(org: Any, owner: Any) -> Any:
    return org_set_lifecycle_policy(
        org=org, actor=owner, owner_departure="suspend", access_review_after=AFTER, access_review_grace=GRACE
    )


@pytest.fixture
def hook(org: Any, owner: Any, settings: Any) -> Iterator[Server]:
    settings.AGENTKEY_ALLOW_LOOPBACK_URLS = True
    with receiver() as server:
        connect(org, owner, server, "generic", events=REVIEW_EVENTS)
        yield server


def console(member: Any) -> Client:
    client = Client()
    client.force_login(member.user)
    return client


def sent(server: Server, event: str) -> list[dict[str, Any]]:
    for delivery in Delivery.objects.filter(event=event, status=DeliveryStatus.PENDING):
        assert run(delivery).status == DeliveryStatus.SENT
    bodies = [json.loads(r.body) for r in server.requests]
    return [b for b in bodies if b["type"] == event]


def test_approval_and_assignment_certify_the_access(org, agent, tool, per_agent_tool, approver):
    pending = grant_request(agent=agent, tool=tool, reason="I triage the bug queue.")
    approved = grant_approve(grant=pending, reviewer=approver)
    assert approved.certified_at == approved.decided_at
    assigned = grant_assign(agent=agent, tool=per_agent_tool, actor=approver, credential="ghp_" + "x" * 30)
    assert assigned.certified_at is not None
    for grant in (approved, assigned):
        stored = AccessGrant.objects.get(pk=grant.pk)
        assert stored.certified_at == stored.decided_at is not None


def test_old_access_enters_the_queue_once_with_one_summary_per_org(org, reviews_on, tool, operator, hook):
    old = [factories.make_agent(org, f"agent-{n}").agent for n in range(2)]
    grants = [grant_assign(agent=a, tool=tool, actor=operator) for a in old]
    now = timezone.now()

    assert grants_review_due(now=now + AFTER - timedelta(minutes=1)).requested == 0, "not old enough yet"
    run_at = now + AFTER + timedelta(minutes=1)
    assert grants_review_due(now=run_at).requested == 2
    assert grants_review_due(now=run_at + timedelta(hours=1)).requested == 0, "an open review is not reopened"

    for grant in grants:
        grant.refresh_from_db()
        assert (grant.status, grant.review_requested_at) == (GrantStatus.APPROVED, run_at)
    requested = AuditEvent.objects.filter(action=Action.GRANT_REVIEW_REQUESTED).order_by("id")
    assert sorted(e.target_id for e in requested) == sorted(str(g.id) for g in grants)
    assert all(e.actor_label == "access review" for e in requested)
    assert requested[0].metadata["deadline"] == (run_at + GRACE).isoformat()
    [body] = sent(hook, Event.ACCESS_REVIEW_DUE)
    assert body["data"]["count"] == "2"
    assert "agent-0 → Linear" in body["data"]["grants"]
    assert body["data"]["link"].endswith("/reviews/")


def test_reviews_off_queues_nothing(org, tool, operator, agent):
    grant_assign(agent=agent, tool=tool, actor=operator)
    assert grants_review_due(now=timezone.now() + timedelta(days=400)).requested == 0
    assert not AccessGrant.objects.filter(review_requested_at__isnull=False).exists()


def test_recertifying_from_the_queue_keeps_access(
    org, reviews_on, agent, api, tool, operator, approver, auditor, time_machine
):
    grant = grant_assign(agent=agent, tool=tool, actor=operator)
    start = timezone.now()
    grants_review_due(now=start + AFTER + timedelta(minutes=1))

    time_machine.move_to(start + AFTER + timedelta(days=1))
    queue = console(auditor).get(reverse("console:reviews"))
    assert queue.status_code == 200
    assert f'id="review-{grant.id}"' in queue.content.decode()
    recertify_url = reverse("console:review_recertify", kwargs={"grant_id": grant.id})
    assert recertify_url not in queue.content.decode(), "auditors read the queue, they do not decide"
    assert recertify_url in console(approver).get(reverse("console:reviews")).content.decode()
    assert (
        console(auditor).post(reverse("console:review_recertify", kwargs={"grant_id": grant.id})).status_code
        == 403
    )

    response = console(approver).post(reverse("console:review_recertify", kwargs={"grant_id": grant.id}))
    assert response.status_code == 302
    grant.refresh_from_db()
    assert grant.review_requested_at is None
    assert grant.certified_at is not None
    assert abs(grant.certified_at - timezone.now()) < timedelta(seconds=5)
    recertified = AuditEvent.objects.get(action=Action.GRANT_RECERTIFIED, target_id=str(grant.id))
    assert recertified.actor_label == approver.user.email

    later = start + AFTER + timedelta(days=1) + GRACE + timedelta(hours=1)
    run = grants_review_due(now=later)
    assert (run.expired, run.requested) == (0, 0), "recertified access is neither revoked nor queued again"
    assert api.credentials(tool.id).status_code == 200
    with pytest.raises(Conflict) as twice:
        grant_recertify(grant=grant, reviewer=approver)
    assert twice.value.message == NOT_UNDER_REVIEW


def test_access_nobody_recertifies_is_revoked_after_the_grace_period(
    org, reviews_on, agent, api, per_agent_tool, operator, hook, audit_log
):
    grant = grant_assign(agent=agent, tool=per_agent_tool, actor=operator, credential="ghp_" + "y" * 30)
    secret_id = grant.secret_id
    assert secret_id is not None
    assert api.credentials(per_agent_tool.id).status_code == 200
    opened = timezone.now() + AFTER + timedelta(minutes=1)
    grants_review_due(now=opened)

    assert grants_review_due(now=opened + GRACE - timedelta(seconds=1)).expired == 0, "still within the grace"
    assert grants_review_due(now=opened + GRACE).expired == 1

    grant.refresh_from_db()
    assert (grant.status, grant.secret_id, grant.review_requested_at) == (GrantStatus.REVOKED, None, None)
    assert not Secret.objects.filter(id=secret_id).exists(), "the per-agent credential is gone"
    refused = api.credentials(per_agent_tool.id)
    assert refused.status_code == 403
    assert "revoked" in refused.json()["hint"]
    expired = AuditEvent.objects.get(action=Action.GRANT_REVIEW_EXPIRED, target_id=str(grant.id))
    assert expired.metadata["reason"] == "not recertified"
    assert expired.metadata["grace_seconds"] == int(GRACE.total_seconds())
    assert [b["data"]["count"] for b in sent(hook, Event.ACCESS_REVIEW_DUE)] == ["1"]
    [body] = sent(hook, Event.ACCESS_REVIEW_EXPIRED)
    assert (body["data"]["agent"], body["data"]["tool"]) == ("Onboarding-Agent", "GitHub")
    assert body["data"]["reason"] == "nobody recertified it within 7 d"


def test_revoking_from_the_queue_records_not_recertified(org, reviews_on, agent, api, tool, operator, owner):
    grant = grant_assign(agent=agent, tool=tool, actor=operator)
    grants_review_due(now=timezone.now() + AFTER + timedelta(minutes=1))

    response = console(owner).post(reverse("console:review_revoke", kwargs={"grant_id": grant.id}))

    assert response.status_code == 302
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED
    revoked = AuditEvent.objects.get(action=Action.GRANT_REVOKED, target_id=str(grant.id))
    assert revoked.metadata["reason"] == "not recertified"
    assert api.credentials(tool.id).status_code == 403
    assert console(owner).get(reverse("console:reviews")).content.decode().count('id="review-') == 0


def test_reapproved_access_starts_a_fresh_review_clock(org, reviews_on, agent, api, tool, operator, approver):
    grant = grant_assign(agent=agent, tool=tool, actor=operator)
    opened = timezone.now() + AFTER + timedelta(minutes=1)
    grants_review_due(now=opened)
    grants_review_due(now=opened + GRACE)
    api.request_access(tool.id, "Still needed for the weekly report.")
    grant_approve(grant=AccessGrant.objects.get(id=grant.id), reviewer=approver)
    grant.refresh_from_db()
    assert (grant.status, grant.review_requested_at) == (GrantStatus.APPROVED, None)
    assert grants_review_due(now=timezone.now() + AFTER - timedelta(minutes=1)).requested == 0
    assert grants_review_due(now=timezone.now() + AFTER + timedelta(minutes=1)).requested == 1


def test_another_orgs_access_is_neither_reviewed_nor_reachable(org, reviews_on, other_org, owner, operator):
    stranger = factories.make_agent(other_org, "Stranger").agent
    other_tool = factories.make_tool(other_org, "Wiki")
    theirs = grant_assign(agent=stranger, tool=other_tool, actor=operator)
    grants_review_due(now=timezone.now() + AFTER + timedelta(days=1))
    theirs.refresh_from_db()
    assert theirs.review_requested_at is None
    for name in ("review_recertify", "review_revoke"):
        assert (
            console(owner).post(reverse(f"console:{name}", kwargs={"grant_id": theirs.id})).status_code == 404
        )
    theirs.refresh_from_db()
    assert theirs.status == GrantStatus.APPROVED


@pytest.mark.django_db(transaction=True)
def test_recertifying_and_the_expiry_job_at_once_make_exactly_one_decision(
    org, owner, tool, operator, time_machine
):
    org_set_lifecycle_policy(
        org=org, actor=owner, owner_departure="suspend", access_review_after=AFTER, access_review_grace=GRACE
    )
    approver = factories.make_member(org, Role.APPROVER)
    for n in range(3):
        agent = factories.make_agent(org, f"racer-{n}").agent
        grant = grant_assign(agent=agent, tool=tool, actor=operator)
        opened = timezone.now() + AFTER + timedelta(minutes=1)
        grants_review_due(now=opened)
        # Everyone's clock at the deadline: a recertification then is not already due for review
        # again (with the job's clock ahead of the people's, the job could reopen a review
        # between the two recertifications, and both would rightly succeed).
        time_machine.move_to(opened + GRACE)
        results = run_together(
            partial(grant_recertify, grant=grant, reviewer=approver),
            partial(grant_recertify, grant=grant, reviewer=owner),
            partial(grants_review_due, now=opened + GRACE),
        )
        recertified = AuditEvent.objects.filter(
            action=Action.GRANT_RECERTIFIED, target_id=str(grant.id)
        ).count()
        expired = AuditEvent.objects.filter(
            action=Action.GRANT_REVIEW_EXPIRED, target_id=str(grant.id)
        ).count()
        assert recertified + expired == 1, results
        assert sum(isinstance(r, Conflict) for r in results) == 2 - recertified, results
        grant.refresh_from_db()
        assert grant.status == (GrantStatus.APPROVED if recertified else GrantStatus.REVOKED)


def test_a_stale_revoke_cannot_undo_a_recertification(org, reviews_on, agent, api, tool, operator, approver):
    grant = grant_assign(agent=agent, tool=tool, actor=operator)
    grants_review_due(now=timezone.now() + AFTER + timedelta(minutes=1))
    grant_recertify(grant=grant, reviewer=approver)

    with pytest.raises(Conflict) as refused:
        grant_review_revoke(grant=grant, reviewer=operator)

    assert refused.value.message == NOT_UNDER_REVIEW
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.APPROVED
    assert not AuditEvent.objects.filter(action=Action.GRANT_REVOKED, target_id=str(grant.id)).exists()
    assert api.credentials(tool.id).status_code == 200


def test_separation_of_duties_also_keeps_the_tools_owner_from_recertifying(
    org, reviews_on, agent, tool, operator, approver
):
    type(tool).objects.filter(pk=tool.pk).update(owner=approver.user, separation_of_duties=True)
    grant = grant_assign(agent=agent, tool=tool, actor=operator)
    grants_review_due(now=timezone.now() + AFTER + timedelta(minutes=1))

    with pytest.raises(Forbidden):
        grant_recertify(grant=grant, reviewer=approver)

    stored = AccessGrant.objects.get(pk=grant.pk)
    assert stored.review_requested_at is not None, "still waiting for someone else"
    assert not AuditEvent.objects.filter(action=Action.GRANT_RECERTIFIED).exists()


# --- batches: a large organization never locks all its due access at once -------------------------


def agents_with_access(org: Any, tool: Any, operator: Any, count: int) -> list[AccessGrant]:
    """``count`` approved grants, certified one second apart in creation order (the job's order)."""
    start = timezone.now()
    grants = []
    for n in range(count):
        grant = grant_assign(agent=factories.make_agent(org, f"bulk-{n}").agent, tool=tool, actor=operator)
        AccessGrant.objects.filter(pk=grant.pk).update(certified_at=start + timedelta(seconds=n))
        grants.append(grant)
    return grants


def locking_selects(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "FOR UPDATE" in q["sql"] and "grants_" in q["sql"]]


def test_more_due_access_than_one_batch_is_all_handled_in_batches(org, reviews_on, tool, operator, hook):
    grants = agents_with_access(org, tool, operator, 7)
    run_at = timezone.now() + AFTER + timedelta(minutes=1)

    with CaptureQueriesContext(connection) as queries:
        assert grants_review_due(now=run_at, batch_size=2).requested == 7

    assert AccessGrant.objects.filter(review_requested_at=run_at).count() == 7
    selects = locking_selects(queries)
    assert len(selects) == 1 + 4, "one empty expiry batch, then 2 + 2 + 2 + 1 reviews opened"
    assert all("LIMIT 2 FOR UPDATE" in s and s.rstrip().endswith("SKIP LOCKED") for s in selects), selects
    [body] = sent(hook, Event.ACCESS_REVIEW_DUE)
    assert body["data"]["count"] == "7", "one summary for the organization, not one per batch"
    assert body["data"]["grants"].split("; ")[0] == "bulk-0 → Linear"
    assert body["data"]["grants"].endswith("; and 2 more")

    expired = grants_review_due(now=run_at + GRACE, batch_size=3)
    assert (expired.expired, expired.requested) == (7, 0)
    assert AccessGrant.objects.filter(pk__in=[g.pk for g in grants], status=GrantStatus.REVOKED).count() == 7
    assert AuditEvent.objects.filter(action=Action.GRANT_REVIEW_EXPIRED).count() == 7
    assert len(sent(hook, Event.ACCESS_REVIEW_EXPIRED)) == 7


def failing_for(monkeypatch: pytest.MonkeyPatch, grant: AccessGrant) -> None:
    """The review job's audit write fails for ``grant`` (the database refusing it, say)."""

    def refusing(**kwargs: Any) -> Any:
        if kwargs["target"].pk == grant.pk:
            raise RuntimeError("audit write refused")
        return audit_record(**kwargs)

    monkeypatch.setattr("grants.reviews.audit_record", refusing)


@pytest.mark.django_db(transaction=True)
def test_a_failure_in_the_second_batch_keeps_the_first_batch_committed_and_announced(
    org, reviews_on, tool, operator, hook, monkeypatch
):
    grants = agents_with_access(org, tool, operator, 5)
    run_at = timezone.now() + AFTER + timedelta(minutes=1)
    failing_for(monkeypatch, grants[2])  # the first row of the second batch

    with pytest.raises(RuntimeError, match="audit write refused"):
        grants_review_due(now=run_at, batch_size=2)

    assert transaction.get_autocommit(), "no transaction left open: what is read here is committed"
    opened = set(AccessGrant.objects.filter(review_requested_at=run_at).values_list("id", flat=True))
    assert opened == {grants[0].id, grants[1].id}
    audited = AuditEvent.objects.filter(action=Action.GRANT_REVIEW_REQUESTED).values_list(
        "target_id", flat=True
    )
    assert sorted(audited) == sorted([str(grants[0].id), str(grants[1].id)])
    [body] = sent(hook, Event.ACCESS_REVIEW_DUE)
    assert (body["data"]["count"], body["data"]["grants"]) == ("2", "bulk-0 → Linear; bulk-1 → Linear")

    monkeypatch.undo()
    assert grants_review_due(now=run_at + timedelta(minutes=5), batch_size=2).requested == 3
    assert AccessGrant.objects.filter(review_requested_at__isnull=False).count() == 5


@pytest.mark.django_db(transaction=True)
def test_a_failure_in_the_second_expiry_batch_keeps_the_first_batch_revoked(
    org, reviews_on, tool, operator, monkeypatch
):
    grants = agents_with_access(org, tool, operator, 3)
    opened = timezone.now() + AFTER + timedelta(minutes=1)
    assert grants_review_due(now=opened).requested == 3
    failing_for(monkeypatch, grants[2])

    with pytest.raises(RuntimeError, match="audit write refused"):
        grants_review_due(now=opened + GRACE, batch_size=2)

    status = dict(AccessGrant.objects.filter(org=org).values_list("id", "status"))
    assert [status[g.id] for g in grants] == [GrantStatus.REVOKED, GrantStatus.REVOKED, GrantStatus.APPROVED]
    assert AuditEvent.objects.filter(action=Action.GRANT_REVIEW_EXPIRED).count() == 2
