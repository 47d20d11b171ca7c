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
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.lifecycle import org_set_lifecycle_policy
from accounts.models import Role
from agentkey.core.errors import Conflict, Forbidden
from audit.models import Action, AuditEvent
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
