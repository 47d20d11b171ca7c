"""Organization settings changed one at a time (the kill switch, the maximum grant duration):
one helper locks the organization row, changes the setting and audits ``org.settings_changed``.
The audit metadata is part of the signed log, so its canonical bytes must not drift."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Organization
from accounts.services import org_set_anomaly_auto_suspend, org_set_max_grant_duration
from agentkey.core.errors import Forbidden
from audit.models import Action

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def canonical(metadata: dict[str, Any]) -> str:
    """The metadata as the audit signature encodes it (sorted keys, no spaces)."""
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def set_kill_switch(org: Any, actor: Any, value: Any) -> Organization:
    return org_set_anomaly_auto_suspend(org=org, actor=actor, enabled=value)


def set_maximum(org: Any, actor: Any, value: Any) -> Organization:
    return org_set_max_grant_duration(org=org, actor=actor, max_grant_duration=value)


Setter = Callable[[Any, Any, Any], Organization]
SETTERS: dict[str, tuple[Setter, list[Any], list[str]]] = {
    "anomaly_auto_suspend": (
        set_kill_switch,
        [True, True, False],
        [
            '{"from":false,"setting":"anomaly_auto_suspend","to":true}',
            '{"from":true,"setting":"anomaly_auto_suspend","to":false}',
        ],
    ),
    "max_grant_duration": (
        set_maximum,
        [7 * DAY, 7 * DAY, None],
        [
            '{"from_seconds":null,"setting":"max_grant_duration","to_seconds":604800}',
            '{"from_seconds":604800,"setting":"max_grant_duration","to_seconds":null}',
        ],
    ),
}


@pytest.mark.parametrize("setting", list(SETTERS))
def test_each_change_is_audited_once_with_the_same_bytes_and_no_change_writes_nothing(
    org, admin_member, audit_log, setting
):
    setter, values, expected = SETTERS[setting]
    returned = []
    for value in values:  # the second value repeats the first: no change, no event
        returned.append(setter(org, admin_member, value))
        assert getattr(org, setting) == value, "the caller's object follows the stored value"

    events = audit_log.new()
    assert [canonical(e.metadata) for e in events] == expected
    assert {(e.action, e.actor_label, e.target_id) for e in events} == {
        (Action.ORG_SETTINGS_CHANGED, admin_member.user.email, str(org.id))
    }
    stored = Organization.objects.get(pk=org.pk)
    assert getattr(stored, setting) == values[-1]
    assert all(getattr(r, setting) == v for r, v in zip(returned, values, strict=True))


@pytest.mark.parametrize("setting", list(SETTERS))
def test_the_organization_row_is_locked_without_blocking_foreign_key_checks(org, owner, setting):
    setter, values, _ = SETTERS[setting]
    with CaptureQueriesContext(connection) as queries:
        setter(org, owner, values[0])
    locks = [
        q["sql"]
        for q in queries.captured_queries
        if "FOR " in q["sql"] and "accounts_organization" in q["sql"]
    ]
    assert len(locks) == 1
    assert locks[0].rstrip().endswith("FOR NO KEY UPDATE")


@pytest.mark.parametrize("setting", list(SETTERS))
def test_approvers_and_auditors_change_no_setting(org, approver, auditor, audit_log, setting):
    setter, values, _ = SETTERS[setting]
    before = getattr(Organization.objects.get(pk=org.pk), setting)
    for who in (approver, auditor):
        with pytest.raises(Forbidden):
            setter(org, who, values[0])
    assert getattr(Organization.objects.get(pk=org.pk), setting) == before
    assert audit_log.new() == []
