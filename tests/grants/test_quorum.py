"""N-of-M approvals with separation of duties (docs/governance.md).

A tool requiring N approvals is approved only once N distinct eligible people approved the
current request cycle; each approval is its own audit event; a denial ends the cycle, a new
request starts a new count, and a partial quorum expires after the organization's window.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import event as hypothesis_event
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import Agent, Membership, Role
from accounts.services import agent_create
from agentkey.core.errors import Conflict, Forbidden, ValidationFailed
from audit.models import Action, AuditEvent
from catalog.models import CredentialMode, Tool
from catalog.services import tool_update
from grants.models import AccessGrant, GrantApproval, GrantStatus
from grants.quorum import grants_expire_quorums
from grants.services import grant_approve, grant_assign, grant_deny, grant_request, grant_revoke, tool_add
from grants.tasks import expire_stale_quorums
from notifications.messages import Notice
from notifications.models import Delivery, Event
from notifications.services import endpoint_create
from tests import factories
from tests.grants.test_concurrency import run_together
from tests.support.http import access_of

pytestmark = pytest.mark.django_db
SLACK = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
REASON = "I triage the release bugs."


def quorum_tool(org: Any, required: int, **fields: Any) -> Tool:
    return factories.make_tool(org, f"Prod DB {secrets.token_hex(3)}", required_approvals=required, **fields)


def approvers(org: Any, n: int, role: Role = Role.APPROVER) -> list[Membership]:
    return [factories.make_member(org, role) for _ in range(n)]


def actions_for(grant: AccessGrant) -> list[str]:
    return list(
        AuditEvent.objects.filter(target_id=str(grant.id)).order_by("id").values_list("action", flat=True)
    )


# --- the database -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, 6])
def test_the_database_refuses_a_tool_with_0_or_more_than_5_required_approvals(org, bad):
    tool = quorum_tool(org, 2)
    with pytest.raises(IntegrityError, match="catalog_tool_required_approvals_at_least_one"):
        with transaction.atomic():
            Tool.objects.filter(pk=tool.pk).update(required_approvals=bad)
    with pytest.raises(IntegrityError, match="catalog_tool_required_approvals_at_least_one"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE catalog_tool SET required_approvals = %s WHERE id = %s", [bad, tool.pk])
    with pytest.raises(IntegrityError, match="catalog_tool_required_approvals_at_least_one"):
        with transaction.atomic():
            Tool.objects.create(
                org=org,
                config_key=f"zero-{bad}",
                name=f"Zero {bad}",
                normalized_name=f"zero {bad}",
                required_approvals=bad,
            )
    assert Tool.objects.get(pk=tool.pk).required_approvals == 2


@pytest.mark.parametrize("bad", [0, 6, -1])
def test_the_services_refuse_0_or_6_approvals_with_a_field_hint(org, operator, bad):
    with pytest.raises(ValidationFailed) as refused:
        tool_add(
            org=org,
            actor=operator,
            name="Vault",
            credential=factories.new_credential(),
            required_approvals=bad,
        )
    assert refused.value.details[0].field == "required_approvals"
    assert "between 1 and 5" in refused.value.error
    tool = quorum_tool(org, 1)
    with pytest.raises(ValidationFailed):
        tool_update(tool=tool, actor=operator, required_approvals=bad)
    assert Tool.objects.get(pk=tool.pk).required_approvals == 1


# --- the count ----------------------------------------------------------------------------------------


def test_a_2_of_3_tool_stays_pending_after_one_approval_and_opens_after_a_second_person(org, agent, api):
    tool = quorum_tool(org, 2)
    first, second, _third = approvers(org, 3)
    grant = grant_request(agent=agent, tool=tool, reason=REASON)

    after_one = grant_approve(grant=grant, reviewer=first)
    assert after_one.status == GrantStatus.PENDING
    assert access_of(api.tools(), tool.id) == "pending"
    assert api.credentials(tool.id).status_code == 403
    with pytest.raises(Conflict, match=r"already approved this request \(1 of 2"):
        grant_approve(grant=grant, reviewer=first)

    done = grant_approve(grant=grant, reviewer=second)
    assert done.status == GrantStatus.APPROVED
    assert api.credentials(tool.id).status_code == 200
    assert actions_for(grant) == [
        Action.GRANT_REQUESTED,
        Action.GRANT_APPROVAL_RECORDED,
        Action.GRANT_APPROVAL_RECORDED,
        Action.GRANT_APPROVED,
    ]
    recorded = AuditEvent.objects.filter(target_id=str(grant.id), action=Action.GRANT_APPROVAL_RECORDED)
    assert [
        (e.actor_id, e.metadata["approvals"], e.metadata["required"]) for e in recorded.order_by("id")
    ] == [
        (str(first.user.pk), 1, 2),
        (str(second.user.pk), 2, 2),
    ]
    approved = AuditEvent.objects.get(target_id=str(grant.id), action=Action.GRANT_APPROVED)
    assert approved.metadata["approvers"] == [first.user.email, second.user.email]
    assert approved.metadata["required"] == 2
    assert GrantApproval.objects.filter(grant=grant, cycle=grant.requested_at).count() == 2


def test_a_1_approval_tool_behaves_as_before(org, agent, approver):
    tool = quorum_tool(org, 1)
    grant = grant_request(agent=agent, tool=tool, reason=REASON)
    assert grant_approve(grant=grant, reviewer=approver).status == GrantStatus.APPROVED
    assert actions_for(grant) == [Action.GRANT_REQUESTED, Action.GRANT_APPROVED]
    event = AuditEvent.objects.get(target_id=str(grant.id), action=Action.GRANT_APPROVED)
    assert sorted(event.metadata) == ["expires_at", "from", "tool_name"]


def test_the_grant_ends_at_the_earliest_end_the_quorum_chose(org, agent):
    tool = quorum_tool(org, 3)
    a, b, c = approvers(org, 3)
    grant = grant_request(agent=agent, tool=tool, reason=REASON)
    now = timezone.now()
    grant_approve(grant=grant, reviewer=a, expires_at=None)
    grant_approve(grant=grant, reviewer=b, expires_at=now + timedelta(days=2))
    done = grant_approve(grant=grant, reviewer=c, expires_at=now + timedelta(days=7))
    assert done.expires_at == now + timedelta(days=2)

    everyone_none = quorum_tool(org, 2)
    grant = grant_request(agent=agent, tool=everyone_none, reason=REASON)
    grant_approve(grant=grant, reviewer=a, expires_at=None)
    assert grant_approve(grant=grant, reviewer=b, expires_at=None).expires_at is None


def test_an_earlier_approvers_end_that_passed_blocks_completion_with_a_hint(org, agent, time_machine):
    tool = quorum_tool(org, 2)
    a, b = approvers(org, 2)
    grant = grant_request(agent=agent, tool=tool, reason=REASON)
    grant_approve(grant=grant, reviewer=a, expires_at=timezone.now() + timedelta(hours=1))
    time_machine.move_to(timezone.now() + timedelta(hours=2))
    with pytest.raises(Conflict, match="has passed") as refused:
        grant_approve(grant=grant, reviewer=b, expires_at=None)
    assert "Deny this request" in refused.value.hint
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING


def test_the_duration_rules_apply_to_each_approval(org, agent):
    org.max_grant_duration = timedelta(days=1)
    org.save(update_fields=["max_grant_duration"])
    tool = quorum_tool(org, 2)
    a, _b = approvers(org, 2)
    grant = grant_request(agent=agent, tool=tool, reason=REASON, duration=timedelta(hours=8))
    with pytest.raises(ValidationFailed, match="asked for 8 h"):
        grant_approve(grant=grant, reviewer=a, expires_at=timezone.now() + timedelta(days=1))
    assert not GrantApproval.objects.filter(grant=grant).exists()


# --- separation of duties ---------------------------------------------------------------------------


def test_separation_of_duties_keeps_the_agents_creator_and_owner_and_the_tools_owner_out(org):
    creator, owner, tool_owner, outsider = approvers(org, 4, Role.ADMIN)
    agent = agent_create(org=org, name="Payroll-Agent", actor=creator).agent
    Agent.objects.filter(pk=agent.pk).update(owner=owner.user)
    tool = tool_add(
        org=org,
        actor=tool_owner,
        name="Payroll",
        credential=factories.new_credential(),
        required_approvals=1,
        separation_of_duties=True,
    ).tool
    grant = grant_request(agent=Agent.objects.get(pk=agent.pk), tool=tool, reason=REASON)
    for member, why in ((creator, "creator"), (owner, "agent's owner"), (tool_owner, "tool's owner")):
        with pytest.raises(Forbidden, match=f"Separation of duties: .*{why}") as refused:
            grant_approve(grant=grant, reviewer=member)
        assert "neither created nor owns the agent" in refused.value.hint
    assert not GrantApproval.objects.filter(grant=grant).exists()
    assert grant_approve(grant=grant, reviewer=outsider).status == GrantStatus.APPROVED


def test_without_separation_of_duties_the_tools_owner_may_approve(org, agent):
    tool_owner = factories.make_member(org, Role.ADMIN)
    tool = tool_add(org=org, actor=tool_owner, name="Docs", credential=factories.new_credential()).tool
    grant = grant_request(agent=agent, tool=tool, reason=REASON)
    assert grant_approve(grant=grant, reviewer=tool_owner).status == GrantStatus.APPROVED


def test_an_auditor_and_another_organizations_approver_cannot_approve(org, agent, auditor, stranger_approver):
    grant = grant_request(agent=agent, tool=quorum_tool(org, 2), reason=REASON)
    for reviewer in (auditor, stranger_approver):
        with pytest.raises(Forbidden):
            grant_approve(grant=grant, reviewer=reviewer)
    assert not GrantApproval.objects.filter(grant=grant).exists()


# --- cycles: denial, re-request, direct assignment ---------------------------------------------------


def test_a_denial_ends_the_cycle_and_a_new_request_starts_a_new_count(org, agent, api):
    tool = quorum_tool(org, 2)
    a, b, c = approvers(org, 3)
    grant = grant_request(agent=agent, tool=tool, reason=REASON)
    grant_approve(grant=grant, reviewer=a)
    denied = grant_deny(grant=grant, reviewer=b, reason="Not during the freeze.")
    assert denied.status == GrantStatus.DENIED
    with pytest.raises(Conflict):
        grant_approve(grant=grant, reviewer=c)

    again = grant_request(agent=agent, tool=tool, reason="The freeze is over.")
    assert again.requested_at > grant.requested_at
    assert grant_approve(grant=again, reviewer=c).status == GrantStatus.PENDING, (
        "a's old approval does not count"
    )
    assert grant_approve(grant=again, reviewer=a).status == GrantStatus.APPROVED
    assert access_of(api.tools(), tool.id) == "approved"
    approved = AuditEvent.objects.get(target_id=str(grant.id), action=Action.GRANT_APPROVED)
    assert approved.metadata["approvers"] == [c.user.email, a.user.email]


def test_a_quorum_tool_cannot_be_assigned_directly(org, agent, operator, admin_member):
    tool = quorum_tool(org, 2)
    for actor in (operator, admin_member):
        with pytest.raises(Conflict, match="needs 2 approvals") as refused:
            grant_assign(agent=agent, tool=tool, actor=actor)
        assert f"/api/tools/{tool.id}/request" in refused.value.hint
    assert not AccessGrant.objects.filter(tool=tool).exists()


def test_shell_operators_count_once_each_by_label(org, agent):
    from accounts.permissions import Operator

    tool = quorum_tool(org, 2)
    grant = grant_request(agent=agent, tool=tool, reason=REASON)
    grant_approve(grant=grant, reviewer=Operator(label="manage.py (alice)"))
    with pytest.raises(Conflict):
        grant_approve(grant=grant, reviewer=Operator(label="manage.py (alice)"))
    assert (
        grant_approve(grant=grant, reviewer=Operator(label="manage.py (bob)")).status == GrantStatus.APPROVED
    )


# --- per-agent credentials ----------------------------------------------------------------------------


def test_a_per_agent_credential_comes_only_with_the_approval_that_completes_the_quorum(org, agent, api):
    tool = quorum_tool(org, 2, mode=CredentialMode.PER_AGENT)
    a, b = approvers(org, 2)
    grant = grant_request(agent=agent, tool=tool, reason=REASON)
    credential = factories.new_credential("ghp")
    with pytest.raises(ValidationFailed, match="1 of 2") as early:
        grant_approve(grant=grant, reviewer=a, credential=credential)
    assert "Approve without a credential" in early.value.hint
    grant_approve(grant=grant, reviewer=a)
    assert AccessGrant.objects.get(pk=grant.pk).secret_id is None
    with pytest.raises(ValidationFailed, match="completes the quorum") as missing:
        grant_approve(grant=grant, reviewer=b)
    assert missing.value.details[0].field == "credential"
    grant_approve(grant=grant, reviewer=b, credential=credential)
    assert api.credentials(tool.id).json()["credential"] == credential


# --- expiry of a partial quorum ------------------------------------------------------------------------


@pytest.fixture
def channel(org, owner):
    return endpoint_create(
        org=org,
        actor=owner,
        name="Approvers",
        kind="slack",
        url=SLACK,
        events=[Event.ACCESS_APPROVAL_RECORDED, Event.ACCESS_APPROVED, Event.ACCESS_QUORUM_EXPIRED],
    )


def test_a_partial_quorum_expires_after_the_window_and_the_agent_can_ask_again(org, agent, api, channel):
    org.quorum_window = timedelta(hours=24)
    org.save(update_fields=["quorum_window"])
    tool = quorum_tool(org, 2)
    a, b = approvers(org, 2)
    grant = grant_request(agent=agent, tool=tool, reason=REASON)
    grant_approve(grant=grant, reviewer=a)
    first = GrantApproval.objects.get(grant=grant).created_at

    assert grants_expire_quorums(now=first + timedelta(hours=23, minutes=59)) == 0
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING
    assert grants_expire_quorums(now=first + timedelta(hours=24)) == 1
    assert grants_expire_quorums(now=first + timedelta(hours=25)) == 0, "once"

    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.EXPIRED
    event = AuditEvent.objects.get(target_id=str(grant.id), action=Action.GRANT_QUORUM_EXPIRED)
    assert (event.actor_label, event.metadata["approvals"], event.metadata["required"]) == (
        "quorum expiry job",
        1,
        2,
    )
    assert event.metadata["approvers"] == [a.user.email]
    [expired] = Delivery.objects.filter(event=Event.ACCESS_QUORUM_EXPIRED)
    notice = Notice.from_payload(event=expired.event, org=org.name, payload=expired.payload)
    assert notice.title() == f"{agent.name}'s request for {tool.name} expired with 1 of 2 approvals"
    assert expired.payload["subject"]["approvers"] == a.user.email
    with pytest.raises(Conflict):
        grant_approve(grant=grant, reviewer=b)

    assert access_of(api.tools(), tool.id) == "expired"
    assert api.request_access(tool.id, "Still needed for the release.").status_code == 201
    fresh = AccessGrant.objects.get(pk=grant.pk)
    assert grant_approve(grant=fresh, reviewer=a).status == GrantStatus.PENDING, "a new count"
    assert grant_approve(grant=fresh, reviewer=b).status == GrantStatus.APPROVED


def test_a_lapsed_quorum_is_refused_even_before_the_job_runs(org, agent, time_machine):
    tool = quorum_tool(org, 2)
    a, b = approvers(org, 2)
    grant = grant_request(agent=agent, tool=tool, reason=REASON)
    grant_approve(grant=grant, reviewer=a, expires_at=None)
    time_machine.move_to(timezone.now() + org.quorum_window + timedelta(seconds=1))
    with pytest.raises(Conflict, match="quorum was not reached within 3 d") as refused:
        grant_approve(grant=grant, reviewer=b, expires_at=None)
    assert "request access again" in refused.value.hint
    assert expire_stale_quorums() == 1


def test_requests_without_approvals_and_other_states_are_left_to_their_own_rules(org, agent, operator):
    waiting = grant_request(agent=agent, tool=quorum_tool(org, 2), reason=REASON)
    single = quorum_tool(org, 1)
    approved = grant_assign(agent=agent, tool=single, actor=operator)
    assert grants_expire_quorums(now=timezone.now() + timedelta(days=60)) == 0
    assert AccessGrant.objects.get(pk=waiting.pk).status == GrantStatus.PENDING
    assert AccessGrant.objects.get(pk=approved.pk).status == GrantStatus.APPROVED


# --- notifications ------------------------------------------------------------------------------------


def test_each_partial_approval_notifies_and_the_last_one_notifies_approval(org, agent, channel, settings):
    settings.AGENTKEY_PUBLIC_URL = "https://agentkey.example.com"
    tool = quorum_tool(org, 3)
    a, b, c = approvers(org, 3)
    grant = grant_request(agent=agent, tool=tool, reason=REASON)
    for reviewer in (a, b, c):
        grant_approve(grant=grant, reviewer=reviewer)
    partial_rows = list(Delivery.objects.filter(event=Event.ACCESS_APPROVAL_RECORDED).order_by("created_at"))
    titles = [
        Notice.from_payload(event=d.event, org=org.name, payload=d.payload).title() for d in partial_rows
    ]
    assert titles == [
        f"{a.user.email} approved {agent.name}'s access to {tool.name} (1 of 3)",
        f"{b.user.email} approved {agent.name}'s access to {tool.name} (2 of 3)",
    ]
    assert partial_rows[0].payload["link"] == f"https://agentkey.example.com/inbox/#grant-{grant.id}"
    [final] = Delivery.objects.filter(event=Event.ACCESS_APPROVED)
    assert final.payload["subject"]["decided_by"] == c.user.email


# --- races ----------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_people_approving_a_2_of_3_tool_at_once_make_exactly_one_approval_transition(org, agent):
    a, b = approvers(org, 2)
    for _ in range(3):
        tool = quorum_tool(org, 2)
        grant = grant_request(agent=agent, tool=tool, reason=REASON)
        results = run_together(
            partial(grant_approve, grant=grant, reviewer=a), partial(grant_approve, grant=grant, reviewer=b)
        )
        assert all(isinstance(r, AccessGrant) for r in results), results
        assert sorted(r.status for r in results) == [GrantStatus.APPROVED, GrantStatus.PENDING]
        assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.APPROVED
        assert GrantApproval.objects.filter(grant=grant).count() == 2
        assert actions_for(grant).count(Action.GRANT_APPROVED) == 1
        assert actions_for(grant).count(Action.GRANT_APPROVAL_RECORDED) == 2


@pytest.mark.django_db(transaction=True)
def test_one_person_approving_twice_at_once_counts_once(org, agent):
    a = factories.make_member(org, Role.APPROVER)
    grant = grant_request(agent=agent, tool=quorum_tool(org, 2), reason=REASON)
    results = run_together(*[partial(grant_approve, grant=grant, reviewer=a)] * 3)
    assert sorted(type(r).__name__ for r in results) == ["AccessGrant", "Conflict", "Conflict"]
    assert GrantApproval.objects.filter(grant=grant).count() == 1
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING


# --- the property -----------------------------------------------------------------------------------------

# Weighted towards deciders and approvals, so that many examples reach (and re-reach) the quorum.
ROLES = [Role.OWNER, Role.ADMIN, Role.APPROVER, Role.APPROVER, Role.APPROVER, Role.AUDITOR]
STEP = st.tuples(
    st.sampled_from(["approve"] * 8 + ["deny", "request", "request", "revoke"]), st.integers(0, 6)
)


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    roles=st.lists(st.sampled_from(ROLES), min_size=2, max_size=7),
    required=st.integers(1, 3) | st.just(5),
    sod=st.booleans(),
    creator=st.integers(-1, 5),
    agent_owner=st.integers(-1, 5),
    tool_owner=st.integers(-1, 5),
    steps=st.lists(STEP, min_size=1, max_size=16),
)
def test_never_approved_with_fewer_than_n_distinct_eligible_approvers(
    org, operator, roles, required, sod, creator, agent_owner, tool_owner, steps
):
    members = [factories.make_member(org, role) for role in roles]

    def person(i: int) -> Membership | None:
        return members[i] if 0 <= i < len(members) else None

    # The agent's creator and the tool's owner are whoever created them (through the services).
    maker = person(creator)
    maker = maker if maker is not None and maker.role in (Role.OWNER, Role.ADMIN) else None
    # Every agent has a human owner (one of the members; the creator unless another is chosen).
    owner_of_agent = person(agent_owner) or maker or members[0]
    agent = agent_create(
        org=org, name=f"pa-{secrets.token_hex(4)}", actor=maker or operator, owner=owner_of_agent.user
    ).agent
    tool_maker = person(tool_owner)
    tool_maker = (
        tool_maker if tool_maker is not None and tool_maker.role in (Role.OWNER, Role.ADMIN) else None
    )
    tool = tool_add(
        org=org,
        actor=tool_maker or operator,
        name=f"PT {secrets.token_hex(4)}",
        credential=factories.new_credential(),
        required_approvals=required,
        separation_of_duties=sod,
    ).tool
    excluded = {u.user.pk for u in (maker, owner_of_agent, tool_maker) if u is not None} if sod else set()
    grant = grant_request(agent=agent, tool=tool, reason=REASON)

    # The model: the distinct eligible approvers of the current cycle.
    status, cycle, accepted = GrantStatus.PENDING, set(), 0
    for op, i in steps:
        member = members[i % len(members)]
        decides = member.role != Role.AUDITOR
        if op == "approve":
            if not decides:
                expected: type[Exception] | None = Forbidden
            elif status != GrantStatus.PENDING:
                expected = Conflict
            elif member.user.pk in excluded:
                expected = Forbidden
            elif member.user.pk in cycle:
                expected = Conflict
            else:
                expected = None
            if expected is None:
                result = grant_approve(grant=grant, reviewer=member)
                cycle.add(member.user.pk)
                accepted += 1
                if len(cycle) >= required:
                    status = GrantStatus.APPROVED
                assert result.status == status
            else:
                with pytest.raises(expected):
                    grant_approve(grant=grant, reviewer=member)
        elif op == "deny":
            if not decides or status != GrantStatus.PENDING:
                with pytest.raises((Forbidden, Conflict)):
                    grant_deny(grant=grant, reviewer=member, reason="Not this time, sorry.")
            else:
                grant_deny(grant=grant, reviewer=member, reason="Not this time, sorry.")
                status = GrantStatus.DENIED  # the cycle's approvals stay on record but count no more
        elif op == "request":
            if status in (GrantStatus.PENDING, GrantStatus.APPROVED):
                with pytest.raises(Conflict):
                    grant_request(agent=agent, tool=tool, reason=REASON)
            else:
                grant = grant_request(agent=agent, tool=tool, reason=REASON)
                status, cycle = GrantStatus.PENDING, set()
        elif status == GrantStatus.APPROVED:
            grant_revoke(grant=grant, actor=operator)
            status = GrantStatus.REVOKED
        stored = AccessGrant.objects.get(pk=grant.pk)
        assert stored.status == status
        current = GrantApproval.objects.filter(grant=grant, cycle=stored.requested_at)
        assert {a.approver_id for a in current} == cycle

    approvals_made = AuditEvent.objects.filter(target_id=str(grant.id), action=Action.GRANT_APPROVED)
    hypothesis_event(f"quorum reached {min(approvals_made.count(), 2)}x")
    # Every approval transition was backed by N distinct, eligible approvers of one cycle.
    for event in AuditEvent.objects.filter(target_id=str(grant.id), action=Action.GRANT_APPROVED):
        if required == 1:
            assert event.actor_id
            assert int(event.actor_id) not in excluded
            continue
        named = event.metadata["approvers"]
        assert len(named) == len(set(named)) == required
        eligible = {m.user.email for m in members if m.role != Role.AUDITOR and m.user.pk not in excluded}
        assert set(named) <= eligible
    # Each accepted approval is its own row and (with a quorum) its own audit event.
    assert GrantApproval.objects.filter(grant=grant).count() == accepted
    own_events = Action.GRANT_APPROVAL_RECORDED if required > 1 else Action.GRANT_APPROVED
    assert AuditEvent.objects.filter(target_id=str(grant.id), action=own_events).count() == accepted


# --- manage.py approve ------------------------------------------------------------------------------------


def test_manage_py_approve_reports_the_count_and_a_second_run_by_the_same_operator_is_refused(org, agent):
    from tests.cli.conftest import cli_json, cli_json_error

    tool = quorum_tool(org, 2)
    grant = grant_request(agent=agent, tool=tool, reason=REASON)
    out = cli_json("approve", str(grant.id))
    assert (out["status"], out["approvals"]) == (GrantStatus.PENDING, "1 of 2")
    error = cli_json_error("approve", str(grant.id))
    assert "already approved this request" in error["error"]
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING
