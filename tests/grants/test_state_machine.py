"""The grant lifecycle as a hypothesis state machine (issue 8, item 3).

Random sequences of request, approve, assign, deny, revoke, extend, the expiry job,
the passing of time, the organization's maximum, suspension and key rotation never
reach an invalid state: after every step the stored grant matches a model that knows
nothing of the implementation, and a vend succeeds exactly when the grant is approved
and unexpired, the agent active and the key valid.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from accounts.models import Membership, Organization
from accounts.services import agent_key_rotate, agent_reactivate, agent_suspend, org_set_max_grant_duration
from agentkey.core.errors import Conflict, ValidationFailed
from grants.models import AccessGrant, GrantStatus
from grants.services import (
    grant_approve,
    grant_assign,
    grant_deny,
    grant_extend,
    grant_request,
    grant_revoke,
    grants_expire_due,
)
from tests import factories
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db

HOURS = st.sampled_from([None, 1, 8, 24, 48])


class GrantLifecycle(RuleBasedStateMachine):
    """One agent, one tool, one operator; the clock only moves when a rule says so."""

    org: Organization
    operator: Membership
    clock: object  # time_machine's fixture

    @initialize()
    def start(self) -> None:
        self.clock.move_to(timezone.now().replace(microsecond=0), tick=False)  # type: ignore[attr-defined]
        issued = factories.make_agent(self.org, f"sm-{secrets.token_hex(4)}")
        self.agent = issued.agent
        self.tool = factories.make_tool(self.org, f"SM {secrets.token_hex(4)}")
        org_set_max_grant_duration(org=self.org, actor=self.operator, max_grant_duration=None)
        # The model: what the grant, the agent and its keys should be.
        self.status = "none"
        self.expires_at: datetime | None = None
        self.asked: timedelta | None = None
        self.org_max: timedelta | None = None
        self.active = True
        self.keys: list[tuple[str, datetime | None]] = [(issued.key.plaintext, None)]

    # --- the model --------------------------------------------------------------------------------

    def now(self) -> datetime:
        return timezone.now()

    def effective(self) -> str:
        if self.status == "approved" and self.expires_at is not None and self.expires_at <= self.now():
            return "expired"
        return self.status

    def grant(self) -> AccessGrant | None:
        return AccessGrant.objects.filter(agent=self.agent, tool=self.tool).first()

    def _expiry(self, hours: int | None) -> datetime | None:
        return self.now() + timedelta(hours=hours) if hours else None

    def _within_org_max(self, expires_at: datetime | None) -> bool:
        if self.org_max is None:
            return True
        return expires_at is not None and expires_at <= self.now() + self.org_max

    # --- the agent ---------------------------------------------------------------------------------

    @rule(duration=st.sampled_from([None, 24]))
    def request(self, duration: int | None) -> None:
        asked = timedelta(hours=duration) if duration else None
        if self.effective() in ("pending", "approved"):
            with pytest.raises(Conflict):
                grant_request(agent=self.agent, tool=self.tool, reason="Need it for the job.", duration=asked)
            return
        grant_request(agent=self.agent, tool=self.tool, reason="Need it for the job.", duration=asked)
        self.status, self.expires_at, self.asked = "pending", None, asked

    # --- people ------------------------------------------------------------------------------------

    @rule(hours=HOURS)
    def approve(self, hours: int | None) -> None:
        grant, expires = self.grant(), self._expiry(hours)
        if grant is None:
            return
        if grant.status != GrantStatus.PENDING:
            with pytest.raises(Conflict):
                grant_approve(grant=grant, reviewer=self.operator, expires_at=expires)
            return
        longer_than_asked = self.asked is not None and (expires is None or expires > self.now() + self.asked)
        if longer_than_asked or not self._within_org_max(expires):
            with pytest.raises(ValidationFailed):
                grant_approve(grant=grant, reviewer=self.operator, expires_at=expires)
            stored = AccessGrant.objects.get(pk=grant.pk)
            assert (stored.status, stored.expires_at) == (GrantStatus.PENDING, None), (
                "a refused approval changes nothing"
            )
            return
        grant_approve(grant=grant, reviewer=self.operator, expires_at=expires)
        self.status, self.expires_at = "approved", expires

    @rule(hours=HOURS)
    def assign(self, hours: int | None) -> None:
        expires = self._expiry(hours)
        if not self._within_org_max(expires):
            with pytest.raises(ValidationFailed):
                grant_assign(agent=self.agent, tool=self.tool, actor=self.operator, expires_at=expires)
            return
        if self.effective() == "approved":
            with pytest.raises(Conflict):
                grant_assign(agent=self.agent, tool=self.tool, actor=self.operator, expires_at=expires)
            return
        grant_assign(agent=self.agent, tool=self.tool, actor=self.operator, expires_at=expires)
        self.status, self.expires_at = "approved", expires

    @rule()
    def deny(self) -> None:
        grant = self.grant()
        if grant is None:
            return
        if grant.status == GrantStatus.PENDING:
            grant_deny(grant=grant, reviewer=self.operator, reason="Not needed for this task.")
            self.status = "denied"
        else:
            with pytest.raises(Conflict):
                grant_deny(grant=grant, reviewer=self.operator, reason="Not needed for this task.")

    @rule()
    def revoke(self) -> None:
        grant = self.grant()
        if grant is None:
            return
        if grant.status == GrantStatus.APPROVED:
            grant_revoke(grant=grant, actor=self.operator)
            self.status, self.expires_at = "revoked", None
        else:
            with pytest.raises(Conflict):
                grant_revoke(grant=grant, actor=self.operator)

    @rule(hours=st.sampled_from([1, 24, 24 * 40]))
    def extend(self, hours: int) -> None:
        grant, by = self.grant(), timedelta(hours=hours)
        if grant is None:
            return
        if by > timedelta(days=30):
            with pytest.raises(ValidationFailed):
                grant_extend(grant=grant, actor=self.operator, by=by)
            return
        if self.effective() != "approved" or self.expires_at is None:
            with pytest.raises(Conflict):
                grant_extend(grant=grant, actor=self.operator, by=by)
            return
        limit = min(self.org_max or timedelta(days=30), timedelta(days=30))
        if self.expires_at + by > self.now() + limit:
            with pytest.raises(ValidationFailed):
                grant_extend(grant=grant, actor=self.operator, by=by)
            return
        grant_extend(grant=grant, actor=self.operator, by=by)
        self.expires_at += by

    @rule(hours=st.sampled_from([None, 24]))
    def set_org_maximum(self, hours: int | None) -> None:
        limit = timedelta(hours=hours) if hours else None
        org_set_max_grant_duration(org=self.org, actor=self.operator, max_grant_duration=limit)
        self.org_max = limit  # decisions from now on; access already given keeps its expiry

    @rule()
    def suspend(self) -> None:
        if self.active:
            agent_suspend(agent=self.agent, actor=self.operator)
            self.active = False
        else:
            with pytest.raises(Conflict):
                agent_suspend(agent=self.agent, actor=self.operator)

    @rule()
    def reactivate(self) -> None:
        if not self.active:
            agent_reactivate(agent=self.agent, actor=self.operator)
            self.active = True
        else:
            with pytest.raises(Conflict):
                agent_reactivate(agent=self.agent, actor=self.operator)

    @rule(grace_hours=st.sampled_from([None, 1]))
    def rotate_key(self, grace_hours: int | None) -> None:
        grace = timedelta(hours=grace_hours) if grace_hours else None
        rotated = agent_key_rotate(agent=self.agent, actor=self.operator, grace=grace)
        cutoff = self.now() + grace if grace else self.now()
        self.keys = [(k, min(e, cutoff) if e else cutoff) for k, e in self.keys] + [(rotated.plaintext, None)]

    # --- time and jobs -----------------------------------------------------------------------------

    @rule(hours=st.sampled_from([1, 2, 7, 30]))
    def wait(self, hours: int) -> None:
        self.clock.move_to(self.now() + timedelta(hours=hours), tick=False)  # type: ignore[attr-defined]

    @rule()
    def expiry_job(self) -> None:
        grants_expire_due()
        if self.effective() == "expired":
            self.status, self.expires_at = "expired", None
            assert AccessGrant.objects.get(agent=self.agent, tool=self.tool).status == GrantStatus.EXPIRED

    # --- what must always hold ---------------------------------------------------------------------

    @invariant()
    def stored_state_matches_the_model(self) -> None:
        stored = self.grant()
        assert (stored.effective_status(self.now()) if stored else "none") == self.effective()
        if stored is not None:
            assert stored.status in GrantStatus.values
            assert stored.status != GrantStatus.DENIED or stored.denial_reason
            assert stored.status == GrantStatus.APPROVED or stored.secret_id is None
            if stored.status == GrantStatus.APPROVED:
                assert stored.expires_at == self.expires_at

    @invariant()
    def a_vend_succeeds_exactly_when_it_should(self) -> None:
        now = self.now()
        for key, key_end in self.keys:  # every key ever issued: rotated-out keys stay refused
            key_valid = key_end is None or key_end > now
            response = AgentClient(key).credentials(self.tool.id)
            expected_ok = key_valid and self.active and self.effective() == "approved"
            assert (response.status_code == 200) == expected_ok, response.status_code
            if not key_valid:
                assert response.status_code == 401
            elif not self.active:
                assert response.status_code == 403


def test_random_grant_lifecycles_never_reach_an_invalid_state(org, operator, time_machine, settings):
    settings.RATELIMIT_ENABLE = False  # limits are not under test here; the clock is frozen
    machine = type("Lifecycle", (GrantLifecycle,), {"org": org, "operator": operator, "clock": time_machine})
    run_state_machine_as_test(
        machine,
        settings=hypothesis_settings(
            max_examples=30,
            stateful_step_count=14,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
