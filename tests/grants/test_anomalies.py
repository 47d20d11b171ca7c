"""Anomaly rules end to end: crafted history, the real agent API, the beat job, alerts, audit rows,
notifications sent to a real receiver, and the kill switch suspending the agent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache

from accounts.models import AgentStatus
from accounts.services import AGENT_SUSPENDED, agent_key_rotate, agent_suspend
from audit.models import Action, AuditEvent
from grants import anomalies
from grants.anomalies import Detected, alert_raise, anomalies_detect
from grants.models import Alert, AlertRule, AlertSeverity
from grants.services import grant_assign
from grants.tasks import detect_anomalies
from tests import factories
from tests.grants.alerting import (
    alert_channel,
    alert_deliveries,
    alerts,
    delivered_text,
    kill_switch,
    previous_days,
    vend_history,
)
from tests.support.http import AgentClient

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loopback")]

DAY = datetime(2026, 6, 10, tzinfo=UTC)


@pytest.fixture
def loopback(settings):
    settings.AGENTKEY_ALLOW_LOOPBACK_URLS = True


@pytest.fixture
def vending(agent, tool, operator):
    grant_assign(agent=agent, tool=tool, actor=operator)


def vend(api, tool, times):
    for _ in range(times):
        assert api.credentials(tool.id).status_code == 200


# --- vend rate -------------------------------------------------------------------------------------


@pytest.fixture
def low_floor(settings):
    # Twenty-five real vends through the API keep the test quick; the rule is the same at 50.
    settings.AGENTKEY_ANOMALY_VEND_RATE_FLOOR = 20
    settings.AGENTKEY_ANOMALY_VEND_RATE_FACTOR = 10


@pytest.mark.usefixtures("vending", "low_floor")
def test_a_vend_rate_ten_times_the_agents_baseline_raises_one_alert_and_notifies(
    org, agent, tool, api, time_machine
):
    vend_history(
        time_machine, agent=agent, tool=tool, days=previous_days(DAY, 7), hours=range(9, 17), per_hour=2
    )
    time_machine.move_to(DAY.replace(hour=12, minute=5), tick=False)
    with alert_channel(org) as server:
        vend(api, tool, 25)
        run = anomalies_detect()
        assert run.vend_rate == 1
        [alert] = alerts(AlertRule.VEND_RATE)
        assert (alert.agent_id, alert.severity, alert.org_id) == (agent.id, AlertSeverity.MEDIUM, org.id)
        assert alert.details["last_hour"] == 25
        assert alert.details["baseline_per_active_hour"] == 2.0
        assert "25 times in the last hour (usually 2.0 per active hour)" in alert.summary
        raised = AuditEvent.objects.get(action=Action.ALERT_RAISED)
        assert raised.metadata["rule"] == "vend_rate"
        assert raised.target_id == str(alert.id)
        [delivery] = alert_deliveries()
        text = delivered_text(delivery, server)
        assert text.startswith("Medium alert: Onboarding-Agent fetched credentials 25 times")
        assert f"/alerts/#alert-{alert.id}" in text
        # The next minute's run sees the same hour: no second alert, no second notification.
        time_machine.move_to(DAY.replace(hour=12, minute=6), tick=False)
        vend(api, tool, 5)
        assert anomalies_detect().vend_rate == 0
        assert len(alerts(AlertRule.VEND_RATE)) == 1
        assert len(alert_deliveries()) == 1
    agent.refresh_from_db()
    assert agent.status == AgentStatus.ACTIVE, "the kill switch is off: alert only"


@pytest.mark.usefixtures("vending", "low_floor")
def test_a_steady_agent_raises_nothing(agent, tool, api, time_machine):
    vend_history(
        time_machine, agent=agent, tool=tool, days=previous_days(DAY, 7), hours=range(9, 17), per_hour=3
    )
    time_machine.move_to(DAY.replace(hour=12, minute=5), tick=False)
    vend(api, tool, 3)
    assert anomalies_detect() == Detected()
    assert not Alert.objects.exists()


@pytest.mark.usefixtures("vending", "low_floor")
def test_a_busy_agent_below_ten_times_its_baseline_is_not_flagged(agent, tool, api, time_machine):
    vend_history(
        time_machine, agent=agent, tool=tool, days=previous_days(DAY, 7), hours=range(9, 17), per_hour=3
    )
    time_machine.move_to(DAY.replace(hour=12, minute=5), tick=False)
    vend(api, tool, 25)  # above the floor, but under 10 x 3 per hour
    assert anomalies_detect().vend_rate == 0


@pytest.mark.usefixtures("vending", "low_floor")
def test_with_the_kill_switch_on_the_vend_rate_alert_suspends_the_agent_and_its_next_vend_is_refused(
    org, agent, tool, api, time_machine, audit_log
):
    kill_switch(org, on=True)
    time_machine.move_to(DAY.replace(hour=12, minute=5), tick=False)
    vend(api, tool, 20)  # no history at all: the floor alone decides
    with alert_channel(org) as server:
        detect_anomalies()  # the beat task itself
        [alert] = alerts(AlertRule.VEND_RATE)
        assert alert.agent_suspended
        agent.refresh_from_db()
        assert agent.status == AgentStatus.SUSPENDED
        suspended = AuditEvent.objects.get(action=Action.AGENT_SUSPENDED)
        assert suspended.actor_label == "anomaly kill switch"
        assert suspended.metadata["reason"].startswith(f"Alert {alert.id}:")
        refused = api.credentials(tool.id)
        assert refused.status_code == 403
        assert refused.json() == {"error": AGENT_SUSPENDED.error, "hint": AGENT_SUSPENDED.hint}
        assert "suspended by the kill switch" not in refused.content.decode()
        [delivery] = alert_deliveries()
        assert delivery.payload["subject"]["agent_suspended"] == "yes (kill switch)"
        assert "yes (kill switch)" in delivered_text(delivery, server)


# --- off hours -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("vending")
def test_vending_in_an_hour_never_used_in_two_weeks_raises_a_low_alert(org, agent, tool, api, time_machine):
    vend_history(
        time_machine, agent=agent, tool=tool, days=previous_days(DAY, 10), hours=range(9, 17), per_hour=1
    )
    time_machine.move_to(DAY.replace(hour=3, minute=20), tick=False)
    with alert_channel(org) as server:
        vend(api, tool, 1)
        assert anomalies_detect().off_hours == 1
        [alert] = alerts(AlertRule.OFF_HOURS)
        assert alert.severity == AlertSeverity.LOW
        assert alert.details == {"hour_utc": 3, "usual_hours_utc": list(range(9, 17))}
        assert "at 03:00-03:59 UTC" in alert.summary
        vend(api, tool, 1)
        assert anomalies_detect().off_hours == 0, "one alert per agent and hour"
        [delivery] = alert_deliveries()
        assert delivered_text(delivery, server).startswith(
            "Low alert: Onboarding-Agent fetched credentials at 03:00"
        )


@pytest.fixture
def off_hours_vend(agent, tool, api, time_machine):
    """Ten days of office-hours history, then one vend at 03:20 UTC: an off-hours hour to judge."""
    vend_history(
        time_machine, agent=agent, tool=tool, days=previous_days(DAY, 10), hours=range(9, 17), per_hour=1
    )
    time_machine.move_to(DAY.replace(hour=3, minute=20), tick=False)
    vend(api, tool, 1)


@pytest.mark.usefixtures("vending", "off_hours_vend")
def test_a_job_that_crashes_while_judging_an_off_hours_hour_judges_it_again_next_run(monkeypatch):
    def crash(**kwargs):
        raise RuntimeError("worker lost its database connection")

    with monkeypatch.context() as patched:
        patched.setattr(anomalies, "alert_raise", crash)
        with pytest.raises(RuntimeError):
            anomalies_detect()
    assert not alerts(AlertRule.OFF_HOURS)
    assert anomalies_detect().off_hours == 1, "the hour was not marked as judged before the crash"
    assert len(alerts(AlertRule.OFF_HOURS)) == 1


@pytest.mark.usefixtures("vending", "off_hours_vend")
def test_two_workers_judging_the_same_off_hours_hour_raise_one_alert(agent):
    assert anomalies_detect().off_hours == 1
    # The second worker read the cache before the first marked the hour as judged.
    assert cache.delete(f"anomaly:offhours:{agent.id}:{DAY.replace(hour=3).isoformat()}")
    assert anomalies_detect().off_hours == 0
    assert len(alerts(AlertRule.OFF_HOURS)) == 1
    assert AuditEvent.objects.filter(action=Action.ALERT_RAISED).count() == 1


@pytest.mark.usefixtures("vending")
def test_vending_in_usual_hours_raises_nothing(agent, tool, api, time_machine):
    vend_history(
        time_machine, agent=agent, tool=tool, days=previous_days(DAY, 10), hours=range(9, 17), per_hour=1
    )
    time_machine.move_to(DAY.replace(hour=10, minute=20), tick=False)
    vend(api, tool, 3)
    assert anomalies_detect().off_hours == 0
    assert not Alert.objects.exists()


@pytest.mark.usefixtures("vending")
def test_an_agent_with_less_than_a_week_of_history_is_not_judged_on_its_hours(agent, tool, api, time_machine):
    vend_history(
        time_machine, agent=agent, tool=tool, days=previous_days(DAY, 3), hours=range(9, 17), per_hour=1
    )
    time_machine.move_to(DAY.replace(hour=3, minute=20), tick=False)
    vend(api, tool, 1)
    assert anomalies_detect().off_hours == 0


# --- refused keys from one address -----------------------------------------------------------------


@pytest.fixture
def small_auth_threshold(settings):
    settings.AGENTKEY_ANOMALY_AUTH_FAILURES = 5


@pytest.mark.usefixtures("small_auth_threshold")
def test_a_burst_of_unknown_keys_from_one_address_raises_one_alert_for_the_operators():
    intruder = AgentClient("sk_agent_" + "x" * 32)
    for _ in range(12):
        assert intruder.tools().status_code == 401
    assert anomalies_detect().auth_failures == 1
    [alert] = alerts(AlertRule.AUTH_FAILURES)
    assert alert.org_id is None, "nobody's key: an operator alert (Django admin)"
    assert alert.source_address == "127.0.0.1"
    assert alert.summary == "5 refused agent keys from 127.0.0.1 within 5 minutes"
    assert AuditEvent.objects.get(action=Action.ALERT_RAISED).metadata["source_address"] == "127.0.0.1"
    assert anomalies_detect().auth_failures == 0, "once per address and window"
    assert not alert_deliveries(), "no organization to notify"


@pytest.mark.usefixtures("small_auth_threshold", "vending")
def test_a_rotated_out_key_hammering_from_one_address_alerts_its_organization_but_the_kill_switch_never_suspends(
    org, agent, tool, issued, operator
):
    # Anyone holding a leaked old key could otherwise take a working agent offline at will.
    kill_switch(org, on=True)
    fresh = agent_key_rotate(agent=agent, actor=operator)
    old = AgentClient(issued.key.plaintext)
    with alert_channel(org) as server:
        for _ in range(5):
            assert old.credentials(tool.id).status_code == 401
        assert anomalies_detect().auth_failures == 1
        [alert] = alerts(AlertRule.AUTH_FAILURES)
        assert (alert.org_id, alert.agent_id, alert.agent_suspended) == (org.id, agent.id, False)
        assert "with Onboarding-Agent's key" in alert.summary
        [delivery] = alert_deliveries()
        assert "agent_suspended" not in delivery.payload["subject"]
        text = delivered_text(delivery, server)
        assert text.startswith("Medium alert: 5 refused agent keys from 127.0.0.1")
        assert "kill switch" not in text
    agent.refresh_from_db()
    assert agent.status == AgentStatus.ACTIVE
    assert not AuditEvent.objects.filter(action=Action.AGENT_SUSPENDED).exists()
    assert AgentClient(fresh.plaintext).credentials(tool.id).status_code == 200


@pytest.mark.usefixtures("small_auth_threshold")
def test_counting_refused_keys_fails_open_when_the_cache_is_down(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    settings.AGENTKEY_RATELIMIT_FAIL_OPEN_TIERS = ["preauth"]
    intruder = AgentClient("sk_agent_" + "y" * 32)
    for _ in range(6):
        response = intruder.tools()
        assert response.status_code == 401
        assert response.json()["error"] == "Invalid API key."
    assert anomalies_detect().auth_failures == 0


# --- many new tools in a short time ----------------------------------------------------------------


def test_requests_for_five_new_tools_within_ten_minutes_raise_one_alert(org, agent, api, time_machine):
    tools = [factories.make_tool(org, f"Tool {n}") for n in range(6)]
    time_machine.move_to(DAY.replace(hour=12), tick=False)
    with alert_channel(org) as server:
        for tool in tools[:4]:
            assert api.request_access(tool.id).status_code == 201
        assert not alerts(AlertRule.NEW_TOOLS_BURST), "four is ordinary"
        assert api.request_access(tools[4].id).status_code == 201
        [alert] = alerts(AlertRule.NEW_TOOLS_BURST)
        assert alert.details == {"new_tools": 5, "window_minutes": 10}
        assert api.request_access(tools[5].id).status_code == 201
        assert len(alerts(AlertRule.NEW_TOOLS_BURST)) == 1, "deduplicated within the window"
        requested = alert_deliveries()
        assert len(requested) == 1
        assert delivered_text(requested[0], server).startswith(
            "Medium alert: Onboarding-Agent asked for 5 tools it never had within 10 minutes"
        )


def test_requests_spread_over_more_than_the_window_raise_nothing(org, api, time_machine):
    tools = [factories.make_tool(org, f"Tool {n}") for n in range(5)]
    start = DAY.replace(hour=12)
    for n, tool in enumerate(tools):
        time_machine.move_to(start + timedelta(minutes=4 * n), tick=False)
        assert api.request_access(tool.id).status_code == 201
    assert not Alert.objects.exists()


# --- the alert service -----------------------------------------------------------------------------


def test_an_alert_is_raised_once_per_condition_and_window(org, agent):
    window = DAY.replace(hour=12)
    first = alert_raise(
        rule=AlertRule.VEND_RATE,
        severity=AlertSeverity.MEDIUM,
        summary="x",
        window_start=window,
        org=org,
        agent=agent,
    )
    again = alert_raise(
        rule=AlertRule.VEND_RATE,
        severity=AlertSeverity.MEDIUM,
        summary="x",
        window_start=window,
        org=org,
        agent=agent,
    )
    assert first is not None
    assert again is None
    assert AuditEvent.objects.filter(action=Action.ALERT_RAISED).count() == 1


def test_the_beat_schedule_runs_the_anomaly_job_every_minute(settings):
    from agentkey.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["detect-anomalies"]
    assert (entry["task"], entry["schedule"]) == ("grants.detect_anomalies", 60.0)
    assert "grants.detect_anomalies" in app.tasks


@pytest.mark.usefixtures("small_auth_threshold", "vending")
def test_a_suspended_agent_retrying_its_own_key_is_audited_not_counted_as_refused_keys(
    org, agent, tool, issued, operator
):
    agent_suspend(agent=agent, actor=operator)
    suspended = AgentClient(issued.key.plaintext)
    for _ in range(12):
        assert suspended.credentials(tool.id).status_code == 403
    assert anomalies_detect().auth_failures == 0
    assert not alerts(AlertRule.AUTH_FAILURES)
    assert AuditEvent.objects.filter(action=Action.AUTH_REJECTED_SUSPENDED).count() == 1
