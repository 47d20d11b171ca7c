"""Each filter returns exactly the right events, alone and combined."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from accounts.models import Role
from audit.models import Action, AuditEvent
from tests import factories
from tests.console.audit.conftest import console_for, org_ids, shown_ids

pytestmark = pytest.mark.django_db


@pytest.fixture
def scene(org, owner, record, system) -> dict[str, Any]:
    """Two agents, two tools, two people and the system acting on them."""
    a = factories.make_agent(org, "Alpha-Agent").agent
    b = factories.make_agent(org, "Beta-Agent").agent
    x = factories.make_tool(org, "Xray")
    y = factories.make_tool(org, "Yankee")
    admin = factories.make_member(org, Role.ADMIN)
    for _ in range(3):
        record(Action.CREDENTIAL_VENDED, a, x)
        record(Action.CREDENTIAL_VENDED, b, y)
    record(Action.CREDENTIAL_VENDED, a, y)
    record(Action.AGENT_SUSPENDED, admin, a, reason="Looping")
    record(Action.TOOL_UPDATED, owner, x, fields=["url"])
    record(Action.TOOL_UPDATED, system, y, fields=["name"])
    return {"a": a, "b": b, "x": x, "y": y, "admin": admin, "owner": owner}


def page(member: Any, query: str) -> list[int]:
    return shown_ids(console_for(member).get(f"/audit/?{query}"))


def test_by_agent(org, auditor, scene):
    a = scene["a"]
    assert page(auditor, f"agent={a.id}") == org_ids(org, agent_id=a.id)
    # Events where the agent is the actor and where it is the target.
    actions = set(
        AuditEvent.objects.filter(id__in=page(auditor, f"agent={a.id}")).values_list("action", flat=True)
    )
    assert {"credential.vended", "agent.suspended", "agent.created"} <= actions


def test_by_tool(org, auditor, scene):
    y = scene["y"]
    expected = org_ids(org, tool_id=y.id)
    assert page(auditor, f"tool={y.id}") == expected
    assert len(expected) == 1 + 3 + 1 + 1  # created, vended by B x3, vended by A, updated by the system


def test_by_action(org, auditor, scene):
    assert page(auditor, "action=credential.vended") == org_ids(org, action="credential.vended")
    assert len(page(auditor, "action=credential.vended")) == 7
    assert page(auditor, "action=tool.updated") == org_ids(org, action="tool.updated")


def test_by_human_actor(org, auditor, scene):
    admin = scene["admin"]
    ids = page(auditor, f"actor={admin.user_id}")
    assert ids == org_ids(org, actor_id=str(admin.user_id))
    assert [AuditEvent.objects.get(id=i).action for i in ids] == ["agent.suspended"]


def test_by_agent_actor(org, auditor, scene):
    b = scene["b"]
    ids = page(auditor, f"actor={b.id}")
    assert ids == org_ids(org, actor_id=str(b.id))
    assert len(ids) == 3, "only what B did, not what was done to B"


def test_by_system_actor(org, auditor, scene):
    ids = page(auditor, "actor=system")
    assert ids == org_ids(org, actor_id="")
    assert {AuditEvent.objects.get(id=i).actor_type for i in ids} == {"system"}


def test_filters_combine(org, auditor, scene):
    a, y = scene["a"], scene["y"]
    ids = page(auditor, f"agent={a.id}&tool={y.id}&action=credential.vended&actor={a.id}")
    assert ids == org_ids(org, agent_id=a.id, tool_id=y.id, action="credential.vended", actor_id=str(a.id))
    assert len(ids) == 1


def test_the_pickers_list_the_organizations_agents_tools_and_people(org, auditor, scene, stranger):
    html = console_for(auditor).get("/audit/").content.decode()
    for agent in (scene["a"], scene["b"]):
        assert f'<option value="{agent.id}">{agent.name}</option>' in html
    for tool in (scene["x"], scene["y"]):
        assert f'<option value="{tool.id}">{tool.name}</option>' in html
    assert f'<option value="{scene["admin"].user_id}">{scene["admin"].user.email}</option>' in html
    assert stranger.agent.name not in html


def test_the_chosen_filters_stay_selected(org, auditor, scene):
    a = scene["a"]
    html = (
        console_for(auditor)
        .get(f"/audit/?agent={a.id}&action=credential.vended&from=2026-01-02")
        .content.decode()
    )
    assert f'<option value="{a.id}" selected>{a.name}</option>' in html
    assert '<option value="credential.vended" selected>Credential fetched</option>' in html
    assert 'value="2026-01-02"' in html


def test_a_removed_members_events_can_still_be_filtered(org, auditor, scene):
    admin = scene["admin"]
    admin.delete()
    response = console_for(auditor).get(f"/audit/?actor={admin.user_id}")
    assert len(shown_ids(response)) == 1
    assert f"{admin.user_id} (not in this organization now)" in response.content.decode()


@pytest.mark.parametrize(
    "query",
    [
        "agent=not-a-uuid",
        "tool=42",
        "action=no.such.action",
        "actor=%3Cscript%3E",
        "from=2026-13-01",
        "from=2026-02-03&to=2026-02-01",
    ],
)
def test_invalid_filters_are_explained_and_show_nothing(auditor, scene, query):
    response = console_for(auditor).get(f"/audit/?{query}")
    assert response.status_code == 200
    assert shown_ids(response) == []
    html = response.content.decode()
    assert 'class="errorlist" role="alert"' in html
    assert "<script>" not in html


def test_the_date_range_is_inclusive_in_utc(org, auditor, tool, agent, record, time_machine):
    other = factories.make_agent(org, "Gamma-Agent").agent
    today = datetime.now(UTC).date()
    days = [today + timedelta(days=n) for n in (2, 3, 4)]
    by_day: dict[Any, list[int]] = {}
    for day in days:
        for moment in (
            datetime(day.year, day.month, day.day, 0, 0, 0, tzinfo=UTC),
            datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC),
        ):
            time_machine.move_to(moment, tick=False)
            by_day.setdefault(day, []).append(record(Action.CREDENTIAL_VENDED, agent, tool).id)
    d2, d3, d4 = days

    def expect(*chosen: Any) -> list[int]:
        return sorted((i for day in chosen for i in by_day[day]), reverse=True)

    assert page(auditor, f"from={d3}&to={d3}") == expect(d3)
    assert page(auditor, f"from={d3}") == expect(d3, d4)
    assert page(auditor, f"from={d2}&to={d3}") == expect(d2, d3)
    before_d2 = page(auditor, f"to={d2 - timedelta(days=1)}")
    assert before_d2 == [i for i in org_ids(org) if i < min(by_day[d2])], "everything before the range"
    assert page(auditor, f"from={d4 + timedelta(days=1)}") == [], "after the newest event: nothing"
    assert page(auditor, f"from={d2}&to={d4}&agent={agent.id}") == expect(d2, d3, d4)
    assert page(auditor, f"from={d2}&to={d4}&agent={other.id}") == []


def test_the_extreme_dates_are_handled(org, auditor, scene):
    assert page(auditor, "from=0001-01-01&to=9999-12-31") == org_ids(org)[:50]
    assert page(auditor, "to=9999-12-31") == org_ids(org)[:50]
    assert page(auditor, "from=9999-12-31") == []
