"""Random sequences over the grant lifecycle never reach an invalid state.

After every step the vend succeeds exactly when the grant is approved and
unexpired, the agent active and the key valid — checked against a model
that knows nothing of the implementation.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.services import agent_key_rotate, agent_reactivate, agent_suspend
from agentkey.core.errors import Conflict
from grants.models import AccessGrant, GrantStatus
from grants.services import grant_approve, grant_assign, grant_deny, grant_request, grant_revoke
from tests import factories
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.none()),
        st.tuples(st.just("approve"), st.sampled_from([None, 1, 8, 24])),
        st.tuples(st.just("assign"), st.sampled_from([None, 1, 48])),
        st.tuples(st.just("deny"), st.none()),
        st.tuples(st.just("revoke"), st.none()),
        st.tuples(st.just("wait"), st.sampled_from([1, 2, 7, 30])),
        st.tuples(st.just("suspend"), st.none()),
        st.tuples(st.just("reactivate"), st.none()),
        st.tuples(st.just("rotate"), st.sampled_from([None, 1])),
    ),
    min_size=1,
    max_size=14,
)


@dataclass
class Model:
    status: str = "none"
    expires_at: datetime | None = None
    active: bool = True
    keys: list[tuple[str, datetime | None]] = None  # type: ignore[assignment]

    def effective(self, now: datetime) -> str:
        if self.status == "approved" and self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return self.status


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=STEPS)
def test_vend_succeeds_exactly_when_the_model_says_so(org, operator, time_machine, settings, steps):
    settings.RATELIMIT_ENABLE = False  # limits are not under test here; the clock is frozen
    start = timezone.now().replace(microsecond=0)
    time_machine.move_to(start, tick=False)
    issued = factories.make_agent(org, f"sm-{secrets.token_hex(4)}")
    tool = factories.make_tool(org, f"SM {secrets.token_hex(4)}")
    agent = issued.agent
    model = Model(keys=[(issued.key.plaintext, None)])
    current_key = issued.key.plaintext

    for op, arg in steps:
        now = timezone.now()
        grant = AccessGrant.objects.filter(agent=agent, tool=tool).first()
        effective = model.effective(now)
        if op == "request":
            if effective in ("pending", "approved"):
                with pytest.raises(Conflict):
                    grant_request(agent=agent, tool=tool, reason="Need it for the job.")
            else:
                grant_request(agent=agent, tool=tool, reason="Need it for the job.")
                model.status, model.expires_at = "pending", None
        elif op == "approve":
            expires = now + timedelta(hours=arg) if arg else None
            if grant is None or grant.status != GrantStatus.PENDING:
                if grant is not None:
                    with pytest.raises(Conflict):
                        grant_approve(grant=grant, reviewer=operator, expires_at=expires)
            else:
                grant_approve(grant=grant, reviewer=operator, expires_at=expires)
                model.status, model.expires_at = "approved", expires
        elif op == "assign":
            expires = now + timedelta(hours=arg) if arg else None
            if effective == "approved":
                with pytest.raises(Conflict):
                    grant_assign(agent=agent, tool=tool, actor=operator, expires_at=expires)
            else:
                grant_assign(agent=agent, tool=tool, actor=operator, expires_at=expires)
                model.status, model.expires_at = "approved", expires
        elif op == "deny":
            if grant is not None and grant.status == GrantStatus.PENDING:
                grant_deny(grant=grant, reviewer=operator, reason="Not needed for this task.")
                model.status = "denied"
            elif grant is not None:
                with pytest.raises(Conflict):
                    grant_deny(grant=grant, reviewer=operator, reason="Not needed for this task.")
        elif op == "revoke":
            if grant is not None and grant.status == GrantStatus.APPROVED:
                grant_revoke(grant=grant, actor=operator)
                model.status, model.expires_at = "revoked", None
            elif grant is not None:
                with pytest.raises(Conflict):
                    grant_revoke(grant=grant, actor=operator)
        elif op == "wait":
            time_machine.move_to(now + timedelta(hours=arg), tick=False)
        elif op == "suspend":
            if model.active:
                agent_suspend(agent=agent, actor=operator)
                model.active = False
            else:
                with pytest.raises(Conflict):
                    agent_suspend(agent=agent, actor=operator)
        elif op == "reactivate":
            if not model.active:
                agent_reactivate(agent=agent, actor=operator)
                model.active = True
            else:
                with pytest.raises(Conflict):
                    agent_reactivate(agent=agent, actor=operator)
        elif op == "rotate":
            grace = timedelta(hours=arg) if arg else None
            rotated = agent_key_rotate(agent=agent, actor=operator, grace=grace)
            cutoff = now + grace if grace else now
            model.keys = [(k, min(e, cutoff) if e else cutoff) for k, e in model.keys] + [
                (rotated.plaintext, None)
            ]
            current_key = rotated.plaintext

        now = timezone.now()
        stored = AccessGrant.objects.filter(agent=agent, tool=tool).first()
        assert (stored.effective_status(now) if stored else "none") == model.effective(now)
        if stored is not None and stored.status == GrantStatus.DENIED:
            assert stored.denial_reason
        for key, key_end in model.keys:
            key_valid = key_end is None or key_end > now
            response = AgentClient(key).credentials(tool.id)
            expected_ok = key_valid and model.active and model.effective(now) == "approved"
            assert (response.status_code == 200) == expected_ok, (
                op,
                arg,
                key == current_key,
                response.status_code,
            )
            if not key_valid:
                assert response.status_code == 401
            elif not model.active:
                assert response.status_code == 403
