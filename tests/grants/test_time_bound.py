"""Time-bound access: the organization's maximum, "choose or shorten", extending, and the exact expiry.

The clock is frozen (time-machine) wherever a second matters; the vend is exercised
through the real agent API.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import Role
from accounts.services import org_set_max_grant_duration
from agentkey.core.errors import Conflict, Forbidden, ValidationFailed
from audit.models import Action
from grants.models import AccessGrant, GrantStatus
from grants.services import (
    AS_REQUESTED,
    EXPIRY_SLACK,
    grant_approve,
    grant_assign,
    grant_extend,
    grant_request,
    grant_revoke,
    grants_expire_due,
)
from tests import factories
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
SECOND = timedelta(seconds=1)
EXPIRED_HINT = "Your access expired. Submit a new request via POST /api/tools/{tool_id}/request."


@pytest.fixture
def frozen(time_machine):
    start = timezone.now().replace(microsecond=0)
    time_machine.move_to(start, tick=False)
    return start


def _request(agent, tool, duration=None) -> AccessGrant:
    return grant_request(agent=agent, tool=tool, reason="I file the sprint's bugs there.", duration=duration)


def _max(org, value) -> None:
    org_set_max_grant_duration(org=org, actor=factories.OPERATOR, max_grant_duration=value)
    org.refresh_from_db()


# --- the vend checks the expiry exactly ------------------------------------------------------------


def test_a_grant_is_usable_one_second_before_expiry_and_never_after(
    api, agent, tool, approver, frozen, time_machine
):
    grant = grant_approve(grant=_request(agent, tool, duration=8 * HOUR), reviewer=approver)
    assert grant.expires_at == frozen + 8 * HOUR
    time_machine.move_to(grant.expires_at - SECOND, tick=False)
    ok = api.credentials(tool.id)
    assert ok.status_code == 200
    assert ok.json()["expires_at"] == f"{grant.expires_at:%Y-%m-%dT%H:%M:%SZ}"
    for moment in (grant.expires_at, grant.expires_at + SECOND, grant.expires_at + DAY):
        time_machine.move_to(moment, tick=False)
        refused = api.credentials(tool.id)
        assert refused.status_code == 403, moment
        assert refused.json()["hint"] == EXPIRED_HINT.format(tool_id=tool.id)
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.APPROVED, "no job was needed"


def test_the_agent_sees_expires_at_then_expired_in_its_listing_and_me(
    api, agent, tool, approver, frozen, time_machine
):
    grant = grant_approve(grant=_request(agent, tool, duration=2 * HOUR), reviewer=approver)
    listed = next(t for t in api.tools().json()["tools"] if t["id"] == str(tool.id))
    assert (listed["your_access"], listed["expires_at"]) == (
        "approved",
        f"{grant.expires_at:%Y-%m-%dT%H:%M:%SZ}",
    )
    time_machine.move_to(grant.expires_at, tick=False)
    listed = next(t for t in api.tools().json()["tools"] if t["id"] == str(tool.id))
    assert listed["your_access"] == "expired"
    assert "expires_at" not in listed or listed["expires_at"] is None


def test_the_beat_job_marks_exactly_the_due_grants_and_writes_grant_expired(
    org, agent, tool, operator, frozen, time_machine, audit_log
):
    due = grant_assign(agent=agent, tool=tool, actor=operator, expires_at=frozen + HOUR)
    later = grant_assign(
        agent=factories.make_agent(org).agent, tool=tool, actor=operator, expires_at=frozen + HOUR + SECOND
    )
    time_machine.move_to(frozen + HOUR, tick=False)
    audit_log.mark()
    assert grants_expire_due() == 1
    [event] = audit_log.new()
    assert (event.action, event.actor_type, event.actor_label) == (
        Action.GRANT_EXPIRED,
        "system",
        "expiry job",
    )
    assert event.target_id == str(due.id)
    assert event.metadata["expires_at"] == (frozen + HOUR).isoformat()
    assert AccessGrant.objects.get(pk=due.pk).status == GrantStatus.EXPIRED
    assert AccessGrant.objects.get(pk=later.pk).status == GrantStatus.APPROVED


# --- the organization's maximum --------------------------------------------------------------------


def test_setting_the_maximum_is_for_owners_and_admins_and_is_audited(
    org, owner, admin_member, approver, auditor, audit_log
):
    for who in (approver, auditor):
        with pytest.raises(Forbidden):
            org_set_max_grant_duration(org=org, actor=who, max_grant_duration=DAY)
    audit_log.mark()
    org_set_max_grant_duration(org=org, actor=admin_member, max_grant_duration=7 * DAY)
    org_set_max_grant_duration(org=org, actor=owner, max_grant_duration=7 * DAY)  # unchanged: no event
    org_set_max_grant_duration(org=org, actor=owner, max_grant_duration=None)
    events = audit_log.new()
    assert [e.action for e in events] == [Action.ORG_SETTINGS_CHANGED] * 2
    assert events[0].metadata == {"setting": "max_grant_duration", "from_seconds": None, "to_seconds": 604800}
    assert events[1].metadata["to_seconds"] is None
    assert events[1].actor_label == owner.user.email
    org.refresh_from_db()
    assert org.max_grant_duration is None


@pytest.mark.parametrize("value", [timedelta(minutes=59), 31 * DAY, timedelta(0), -HOUR])
def test_a_maximum_outside_1_hour_to_30_days_is_refused(org, owner, value):
    with pytest.raises(ValidationFailed) as refused:
        org_set_max_grant_duration(org=org, actor=owner, max_grant_duration=value)
    assert refused.value.hint == "Choose a maximum such as 1h, 8h, 1d, 7d or 30d, or no maximum."


def test_another_organizations_member_cannot_set_the_maximum(org, stranger_approver, other_org):
    boss = factories.make_member(other_org, Role.OWNER)
    with pytest.raises(Forbidden):
        org_set_max_grant_duration(org=org, actor=boss, max_grant_duration=DAY)


def test_as_requested_is_shortened_to_the_maximum(org, agent, tool, approver, frozen, audit_log):
    _max(org, 7 * DAY)
    grant = grant_approve(grant=_request(agent, tool, duration=30 * DAY), reviewer=approver)
    assert grant.expires_at == frozen + 7 * DAY
    assert grant.requested_duration == 30 * DAY, "what the agent asked for stays on record"


def test_as_requested_without_a_duration_is_the_maximum_when_one_is_set(org, agent, tool, approver, frozen):
    _max(org, DAY)
    grant = grant_approve(grant=_request(agent, tool), reviewer=approver, expires_at=AS_REQUESTED)
    assert grant.expires_at == frozen + DAY


def test_as_requested_without_a_duration_and_without_a_maximum_is_no_expiry(agent, tool, approver):
    assert grant_approve(grant=_request(agent, tool), reviewer=approver).expires_at is None


@pytest.mark.parametrize("expires_in", [None, 8 * DAY])
def test_an_approval_beyond_the_maximum_is_refused_with_a_hint(
    org, agent, tool, approver, frozen, audit_log, expires_in
):
    _max(org, 7 * DAY)
    grant = _request(agent, tool)
    audit_log.mark()
    with pytest.raises(ValidationFailed) as refused:
        grant_approve(grant=grant, reviewer=approver, expires_at=frozen + expires_in if expires_in else None)
    assert refused.value.error == "This organization allows access for at most 7 d."
    assert "Choose a duration of 7 d or less" in refused.value.hint
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING
    assert audit_log.actions() == []
    assert (
        grant_approve(grant=grant, reviewer=approver, expires_at=frozen + 7 * DAY).expires_at
        == frozen + 7 * DAY
    )


def test_a_direct_assignment_respects_the_maximum_too(org, agent, tool, operator, frozen):
    _max(org, DAY)
    with pytest.raises(ValidationFailed):
        grant_assign(agent=agent, tool=tool, actor=operator)
    with pytest.raises(ValidationFailed):
        grant_assign(agent=agent, tool=tool, actor=operator, expires_at=frozen + 2 * DAY)
    assert (
        grant_assign(agent=agent, tool=tool, actor=operator, expires_at=frozen + DAY).expires_at
        == frozen + DAY
    )


def test_access_granted_before_a_maximum_keeps_its_expiry(org, agent, tool, operator, api):
    grant_assign(agent=agent, tool=tool, actor=operator)
    _max(org, HOUR)
    assert api.credentials(tool.id).status_code == 200


# --- approvers choose or shorten --------------------------------------------------------------------


def test_an_approval_may_shorten_but_not_lengthen_what_the_agent_asked_for(agent, tool, approver, frozen):
    grant = _request(agent, tool, duration=DAY)
    for longer in (None, frozen + 2 * DAY):
        with pytest.raises(ValidationFailed) as refused:
            grant_approve(grant=grant, reviewer=approver, expires_at=longer)
        assert (
            refused.value.error == "The agent asked for 1 d; an approval cannot give more than it asked for."
        )
    assert grant_approve(grant=grant, reviewer=approver, expires_at=frozen + HOUR).expires_at == frozen + HOUR


# --- extending -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.APPROVER])
def test_deciders_extend_approved_access_and_it_is_audited(
    org, agent, tool, operator, frozen, audit_log, role, api
):
    grant = grant_assign(agent=agent, tool=tool, actor=operator, expires_at=frozen + HOUR)
    member = factories.make_member(org, role)
    audit_log.mark()
    extended = grant_extend(grant=grant, actor=member, by=DAY)
    assert extended.expires_at == frozen + HOUR + DAY
    assert AccessGrant.objects.get(pk=grant.pk).expires_at == frozen + HOUR + DAY
    [event] = audit_log.new()
    assert event.action == Action.GRANT_EXTENDED
    assert (event.actor_type, event.actor_label) == ("human", member.user.email)
    assert event.target_id == str(grant.id)
    assert event.metadata == {
        "tool_name": "Linear",
        "by_seconds": 86400,
        "from": (frozen + HOUR).isoformat(),
        "expires_at": (frozen + HOUR + DAY).isoformat(),
    }
    assert api.credentials(tool.id).json()["expires_at"] == f"{frozen + HOUR + DAY:%Y-%m-%dT%H:%M:%SZ}"


def test_auditors_and_other_organizations_cannot_extend(
    org, agent, tool, operator, auditor, stranger_approver, frozen
):
    grant = grant_assign(agent=agent, tool=tool, actor=operator, expires_at=frozen + HOUR)
    for who in (auditor, stranger_approver):
        with pytest.raises(Forbidden):
            grant_extend(grant=grant, actor=who, by=HOUR)
    assert AccessGrant.objects.get(pk=grant.pk).expires_at == frozen + HOUR


def test_only_approved_unexpired_time_bound_access_can_be_extended(
    org, agent, tool, operator, approver, frozen, time_machine, audit_log
):
    lasting = grant_assign(agent=agent, tool=tool, actor=operator)
    audit_log.mark()
    with pytest.raises(Conflict) as refused:
        grant_extend(grant=lasting, actor=approver, by=HOUR)
    assert refused.value.error == "This access has no expiry."
    other = factories.make_tool(org, "Notion")
    pending = _request(agent, other)
    with pytest.raises(Conflict, match="pending"):
        grant_extend(grant=pending, actor=approver, by=HOUR)
    third = factories.make_tool(org, "Figma")
    ending = grant_assign(agent=agent, tool=third, actor=operator, expires_at=frozen + HOUR)
    assert [a for a in audit_log.actions() if a == Action.GRANT_EXTENDED] == []
    time_machine.move_to(frozen + HOUR, tick=False)
    with pytest.raises(Conflict) as refused:
        grant_extend(grant=ending, actor=approver, by=HOUR)
    assert refused.value.error == "This access is expired, not approved."
    assert "the agent can request access again" in refused.value.hint
    revoked = grant_revoke(grant=lasting, actor=approver)
    audit_log.mark()
    with pytest.raises(Conflict, match="revoked"):
        grant_extend(grant=revoked, actor=approver, by=HOUR)
    assert audit_log.actions() == []


def test_an_extension_stays_within_the_maximum(org, agent, tool, operator, approver, frozen, time_machine):
    _max(org, DAY)
    grant = grant_assign(agent=agent, tool=tool, actor=operator, expires_at=frozen + 20 * HOUR)
    with pytest.raises(ValidationFailed) as refused:
        grant_extend(grant=grant, actor=approver, by=8 * HOUR)
    assert refused.value.error == "Extending by 8 h would leave more than 1 d of access."
    assert refused.value.hint == "Choose a shorter extension: access can end at most 1 d from now."
    assert grant_extend(grant=grant, actor=approver, by=4 * HOUR).expires_at == frozen + DAY, (
        "exactly the maximum"
    )
    time_machine.move_to(frozen + 8 * HOUR, tick=False)
    assert grant_extend(grant=grant, actor=approver, by=8 * HOUR).expires_at == frozen + 32 * HOUR


def test_without_a_maximum_an_extension_still_ends_within_30_days(agent, tool, operator, approver, frozen):
    grant = grant_assign(agent=agent, tool=tool, actor=operator, expires_at=frozen + 29 * DAY)
    with pytest.raises(ValidationFailed):
        grant_extend(grant=grant, actor=approver, by=2 * DAY)
    assert grant_extend(grant=grant, actor=approver, by=DAY).expires_at == frozen + 30 * DAY


@pytest.mark.parametrize("by", [timedelta(0), -HOUR, timedelta(minutes=59), 31 * DAY])
def test_an_extension_outside_1_hour_to_30_days_is_refused(agent, tool, operator, approver, frozen, by):
    grant = grant_assign(agent=agent, tool=tool, actor=operator, expires_at=frozen + HOUR)
    with pytest.raises(ValidationFailed):
        grant_extend(grant=grant, actor=approver, by=by)


# --- random durations, extensions and clock moves -------------------------------------------------

DURATION = st.integers(min_value=3600, max_value=30 * 86400).map(lambda s: timedelta(seconds=s))
STEP = st.one_of(
    st.tuples(st.just("wait"), st.integers(min_value=0, max_value=10 * 86400)),
    st.tuples(st.just("edge"), st.sampled_from([-1, 0, 1])),
    st.tuples(st.just("extend"), DURATION),
    st.tuples(st.just("job"), st.none()),
)


@hypothesis_settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    maximum=st.none() | DURATION,
    asked=st.none() | DURATION,
    approve=st.one_of(st.just("as requested"), st.just("none"), DURATION),
    steps=st.lists(STEP, min_size=1, max_size=10),
)
def test_the_vend_succeeds_exactly_while_now_is_before_expires_at(
    org, approver, time_machine, settings, maximum, asked, approve, steps
):
    settings.RATELIMIT_ENABLE = False  # limits are not under test; the clock is frozen
    start = timezone.now().replace(microsecond=0)
    time_machine.move_to(start, tick=False)
    org.max_grant_duration = maximum
    org.save(update_fields=["max_grant_duration"])
    issued = factories.make_agent(org, f"tb-{secrets.token_hex(4)}")
    tool = factories.make_tool(org, f"TB {secrets.token_hex(4)}")
    api = AgentClient(issued.key.plaintext)
    grant = _request(issued.agent, tool, duration=asked)

    # The model: what an approval may give, by the rules and nothing else.
    upper = min([d for d in (asked, maximum) if d is not None], default=None)
    expires_at: datetime | None
    if approve == "as requested":
        expires_at = start + upper if upper is not None else None
        grant_approve(grant=grant, reviewer=approver, expires_at=AS_REQUESTED)
    else:
        wanted = None if approve == "none" else start + approve
        # A view computes the expiry a moment before the service checks it: EXPIRY_SLACK.
        allowed = wanted is not None and (upper is None or wanted <= start + upper + EXPIRY_SLACK)
        if wanted is None and upper is None:
            allowed = True
        if not allowed:
            with pytest.raises(ValidationFailed):
                grant_approve(grant=grant, reviewer=approver, expires_at=wanted)
            return
        grant_approve(grant=grant, reviewer=approver, expires_at=wanted)
        expires_at = wanted
    assert AccessGrant.objects.get(pk=grant.pk).expires_at == expires_at
    limit = min(maximum or 30 * DAY, 30 * DAY)

    for op, arg in steps:
        now = timezone.now()
        if op == "wait":
            time_machine.move_to(now + timedelta(seconds=arg), tick=False)
        elif op == "edge" and expires_at is not None and expires_at + arg * SECOND >= now:
            time_machine.move_to(expires_at + arg * SECOND, tick=False)
        elif op == "extend":
            if expires_at is None or expires_at <= now:
                with pytest.raises(Conflict):
                    grant_extend(grant=grant, actor=approver, by=arg)
            elif expires_at + arg > now + limit:
                with pytest.raises(ValidationFailed):
                    grant_extend(grant=grant, actor=approver, by=arg)
            else:
                assert grant_extend(grant=grant, actor=approver, by=arg).expires_at == expires_at + arg
                expires_at = expires_at + arg
        elif op == "job":
            grants_expire_due()
        now = timezone.now()
        usable = expires_at is None or now < expires_at
        response = api.credentials(tool.id)
        assert response.status_code == (200 if usable else 403), (op, arg, now, expires_at)
        if not usable:
            assert response.json()["hint"] == EXPIRED_HINT.format(tool_id=tool.id)
