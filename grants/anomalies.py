"""Anomaly rules, the kill switch and canary tools (docs/governance.md).

Nothing here runs on the credential vend: the vend-rate and off-hours rules read the audit
log from a beat job (:func:`anomalies_detect`), refused keys are counted in the cache by
``accounts.authfailures`` and turned into alerts by the same job, and the request-time rules
(canary, new-tools burst) run on requests and suggestions, which are not the hot path.

Every rule ends in :func:`alert_raise`: one deduplicated ``Alert`` row, its ``alert.raised``
audit event and notification in the same transaction, and, when the organization's kill
switch is on, the agent suspended.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.exceptions
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Count, Min
from django.db.models.functions import ExtractHour, TruncHour
from django.utils import timezone

from accounts import authfailures
from accounts.models import Agent, AgentStatus, Membership, Organization
from accounts.permissions import Capability, Operator, acting_user, require
from accounts.services import agent_suspend
from agentkey.core.errors import Conflict, Forbidden, Message
from agentkey.core.links import console_link
from audit.models import Action, AuditEvent
from audit.services import SystemActor, audit_record
from catalog.models import Tool
from grants.models import Alert, AlertRule, AlertSeverity
from notifications.models import Event
from notifications.services import notify

logger = logging.getLogger("agentkey.anomalies")

#: Who raises alerts in the audit log.
ANOMALY_RULES = SystemActor(label="anomaly rules")
#: Who suspends an agent when the organization's kill switch is on.
KILL_SWITCH = Operator(label="anomaly kill switch")

ALREADY_ACKNOWLEDGED = Message(
    "This alert was already acknowledged.", "Refresh the alerts page: someone else handled it."
)
CANARY_NOT_APPROVABLE = Message(
    "{tool} is a canary tool: a decoy that no agent may ever use.",
    "Deny the request (an agent asking for a decoy is a sign of prompt injection; see the alerts "
    "page), or, if the tool is real, unmark it as a canary on its edit page first.",
)


def _hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


# --- raising an alert ------------------------------------------------------------------------------


def alert_raise(
    *,
    rule: AlertRule,
    severity: AlertSeverity,
    summary: str,
    window_start: datetime,
    org: Organization | None = None,
    agent: Agent | None = None,
    tool: Tool | None = None,
    source_address: str | None = None,
    details: dict[str, Any] | None = None,
    kill_switch: bool = True,
) -> Alert | None:
    """Record an alert once per (organization, rule, subject, window); None when it was already raised.

    In the caller's transaction: the alert, its audit event and its notification commit (or
    roll back) together; the notification is sent after commit. With the organization's kill
    switch on, the agent the alert is about is suspended at once, unless ``kill_switch=False``
    (a rule that someone other than the agent can set off).
    """
    subject = agent.id if agent is not None else (tool.id if tool is not None else source_address or "-")
    dedup_key = f"{org.id if org else '-'}:{rule}:{subject}:{window_start.isoformat()}"[:200]
    with transaction.atomic():
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    org=org,
                    agent=agent,
                    agent_label=agent.name if agent else "",
                    tool=tool,
                    tool_label=tool.name if tool else "",
                    rule=rule,
                    severity=severity,
                    summary=summary[:300],
                    details=details or {},
                    source_address=source_address,
                    window_start=window_start,
                    dedup_key=dedup_key,
                )
        except IntegrityError:
            return None
        audit_record(
            action=Action.ALERT_RAISED,
            actor=ANOMALY_RULES,
            target=alert,
            org_id=org.id if org else None,
            metadata={
                "rule": str(rule),
                "severity": str(severity),
                "summary": alert.summary,
                **({"source_address": source_address} if source_address else {}),
            },
        )
        if org is None:
            logger.warning("anomaly alert without an organization: %s", alert.summary)
            return alert
        if (
            kill_switch
            and org.anomaly_auto_suspend
            and agent is not None
            and agent.status == AgentStatus.ACTIVE
        ):
            try:
                agent_suspend(agent=agent, actor=KILL_SWITCH, reason=f"Alert {alert.id}: {alert.summary}")
            except Conflict:
                pass  # suspended meanwhile: the kill switch's work is done
            else:
                alert.agent_suspended = True
                alert.save(update_fields=["agent_suspended"])
        subject_labels = {
            "severity": alert.get_severity_display(),
            "summary": alert.summary,
            "agent": alert.agent_label,
            "tool": alert.tool_label,
            "address": source_address or "",
            "agent_suspended": "yes (kill switch)" if alert.agent_suspended else "",
        }
        notify(
            org_id=org.id,
            event=Event.ALERT_RAISED,
            subject={k: v for k, v in subject_labels.items() if v},
            link=console_link("alerts", anchor=f"alert-{alert.id}"),
        )
    return alert


OPERATORS_ONLY = Message(
    "Only operators can acknowledge an alert that belongs to no organization.",
    "Acknowledge it in the Django admin as a superuser.",
)


def alert_acknowledge(*, alert: Alert, actor: Membership | Operator) -> Alert:
    """Someone looked at the alert. Owners, admins and approvers; audited."""
    if alert.org_id is not None:
        require(actor, Capability.DECIDE_GRANTS, alert.org_id)
    elif not isinstance(actor, Operator):
        # An alert without an organization (unknown keys) is the operators' alone.
        raise Forbidden(OPERATORS_ONLY)
    now = timezone.now()
    with transaction.atomic():
        updated = Alert.objects.filter(pk=alert.pk, acknowledged_at__isnull=True).update(
            acknowledged_at=now,
            acknowledged_by=acting_user(actor),
            acknowledged_by_label=actor.audit_actor().label[:200],
        )
        if not updated:
            raise Conflict(ALREADY_ACKNOWLEDGED)
        alert.refresh_from_db()
        audit_record(
            action=Action.ALERT_ACKNOWLEDGED,
            actor=actor,
            target=alert,
            metadata={"rule": alert.rule, "severity": alert.severity},
        )
    return alert


# --- request-time rules (not the vend) -------------------------------------------------------------


def canary_requested(*, agent: Agent, tool: Tool, via: str) -> Alert | None:
    """An agent asked for (``via="request"``) or suggested (``via="suggestion"``) a decoy."""
    now = timezone.now()
    verb = "requested access to" if via == "request" else "suggested"
    return alert_raise(
        rule=AlertRule.CANARY,
        severity=AlertSeverity.HIGH,
        summary=f"{agent.name} {verb} the canary tool {tool.name}: a sign of prompt injection",
        window_start=_hour(now),
        org=Organization.objects.get(pk=agent.org_id),
        agent=agent,
        tool=tool,
        details={"via": via},
    )


def canary_suggestion_check(*, agent: Agent, tool_id: str) -> Alert | None:
    """A suggestion the catalog matched to an existing tool: alert if that tool is a decoy."""
    try:
        parsed = uuid.UUID(tool_id)
    except ValueError:
        return None
    tool = Tool.objects.filter(id=parsed, org_id=agent.org_id, is_canary=True).first()
    if tool is None:
        return None
    return canary_requested(agent=agent, tool=tool, via="suggestion")


def _events_since(moment: datetime) -> Any:
    """Audit events from ``moment`` on, as an id range as well: ids grow with time, so one lookup
    on the (created_at) index bounds the scans on the (org_id, agent_id | actor_id, -id) indexes
    to the window instead of the agent's whole history. (An id assigned out of stamp order by a
    concurrent insert, microseconds apart, can fall outside: immaterial for these counts.)"""
    first = (
        AuditEvent.objects.filter(created_at__gte=moment)
        .order_by("created_at")
        .values_list("id", flat=True)
        .first()
    )
    if first is None:
        return AuditEvent.objects.none()
    return AuditEvent.objects.filter(id__gte=first, created_at__gte=moment)


def new_tools_check(*, agent: Agent, now: datetime) -> Alert | None:
    """After a request for a tool the agent never had: many such requests in a short window?

    One count on the audit log's (org, actor) index, bounded to the window: ``grant.requested``
    rows by this agent that opened a new grant (not reopened, not opened on its behalf when a
    tool it suggested was added).
    """
    window = timedelta(minutes=settings.AGENTKEY_ANOMALY_NEW_TOOLS_WINDOW_MINUTES)
    threshold = settings.AGENTKEY_ANOMALY_NEW_TOOLS
    new_tools = (
        _events_since(now - window)
        .filter(org_id=agent.org_id, actor_id=str(agent.id), action=Action.GRANT_REQUESTED)
        .exclude(metadata__has_key="reopened_from")
        .exclude(metadata__has_key="via")
        .values("tool_id")
        .distinct()
        .count()
    )
    if new_tools < threshold:
        return None
    minutes = settings.AGENTKEY_ANOMALY_NEW_TOOLS_WINDOW_MINUTES
    bucket = int(now.timestamp()) // int(window.total_seconds()) * int(window.total_seconds())
    return alert_raise(
        rule=AlertRule.NEW_TOOLS_BURST,
        severity=AlertSeverity.MEDIUM,
        summary=f"{agent.name} asked for {new_tools} tools it never had within {minutes} minutes",
        window_start=datetime.fromtimestamp(bucket, tz=UTC),
        org=Organization.objects.get(pk=agent.org_id),
        agent=agent,
        details={"new_tools": new_tools, "window_minutes": minutes},
    )


def after_request(*, agent: Agent, tool: Tool, reopened: bool, now: datetime) -> None:
    """The request-time rules, in the request's transaction (grants.services.grant_request)."""
    if tool.is_canary:
        canary_requested(agent=agent, tool=tool, via="request")
    if not reopened:
        new_tools_check(agent=agent, now=now)


# --- the beat job ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detected:
    vend_rate: int = 0
    off_hours: int = 0
    auth_failures: int = 0


def _vends(since: datetime) -> Any:
    return _events_since(since).filter(action=Action.CREDENTIAL_VENDED, agent_id__isnull=False)


def _agents(ids: set[uuid.UUID]) -> dict[uuid.UUID, Agent]:
    return {a.id: a for a in Agent.objects.select_related("org").filter(id__in=ids)}


def _vend_rate(now: datetime, recent: dict[uuid.UUID, tuple[uuid.UUID, int]]) -> int:
    """Agents whose vends in the last 60 minutes reach the floor and ``factor`` times their own mean
    per active hour over the baseline days before that hour."""
    floor = settings.AGENTKEY_ANOMALY_VEND_RATE_FLOOR
    factor = settings.AGENTKEY_ANOMALY_VEND_RATE_FACTOR
    days = settings.AGENTKEY_ANOMALY_BASELINE_DAYS
    busy = {agent_id: (org_id, n) for agent_id, (org_id, n) in recent.items() if n >= floor}
    # This hour's alert is raised once: agents that have it need no baseline scan every minute.
    alerted = set(
        Alert.objects.filter(
            rule=AlertRule.VEND_RATE, window_start=_hour(now), agent_id__in=busy
        ).values_list("agent_id", flat=True)
    )
    busy = {agent_id: seen for agent_id, seen in busy.items() if agent_id not in alerted}
    agents = _agents(set(busy))
    raised = 0
    for agent_id, (org_id, count) in busy.items():
        end = now - timedelta(hours=1)
        baseline = (
            _vends(end - timedelta(days=days))
            .filter(org_id=org_id, agent_id=agent_id, created_at__lt=end)
            .aggregate(total=Count("id"), hours=Count(TruncHour("created_at", tzinfo=UTC), distinct=True))
        )
        mean = baseline["total"] / baseline["hours"] if baseline["hours"] else 0.0
        agent = agents.get(agent_id)
        if agent is None or count < factor * mean:
            continue
        usual = f"{mean:.1f} per active hour" if mean else "no vends in the previous days"
        alert = alert_raise(
            rule=AlertRule.VEND_RATE,
            severity=AlertSeverity.MEDIUM,
            summary=f"{agent.name} fetched credentials {count} times in the last hour (usually {usual})",
            window_start=_hour(now),
            org=agent.org,
            agent=agent,
            details={"last_hour": count, "baseline_per_active_hour": round(mean, 2), "baseline_days": days},
        )
        raised += alert is not None
    return raised


def _off_hours(
    now: datetime, buckets: dict[uuid.UUID, set[datetime]], orgs: dict[uuid.UUID, uuid.UUID]
) -> int:
    """Agents with enough history vending in an hour of the day (UTC) in which they never did in the
    lookback. Each (agent, hour) is judged once: its history is fixed once the hour has begun.

    The hour is remembered as judged only after the judgment (and its alert) is done, so a crash
    in between judges it again on the next run rather than losing its alert. Two workers judging
    the same hour at once raise one alert: ``alert_raise`` deduplicates on (agent, rule, hour)
    with a unique key in the database.
    """
    lookback = timedelta(days=settings.AGENTKEY_ANOMALY_OFF_HOURS_LOOKBACK_DAYS)
    min_history = timedelta(days=settings.AGENTKEY_ANOMALY_OFF_HOURS_MIN_HISTORY_DAYS)
    agents = _agents(set(buckets))
    raised = 0
    for agent_id, hours in buckets.items():
        agent = agents.get(agent_id)
        if agent is None:
            continue
        for bucket in sorted(hours):
            judged = f"anomaly:offhours:{agent_id}:{bucket.isoformat()}"
            # With the cache down the hour is judged again: the alert is deduplicated.
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                if cache.get(judged):
                    continue
            raised += _off_hours_judge(agent, bucket, orgs[agent_id], lookback, min_history)
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                cache.set(judged, 1, timeout=7200)
    return raised


def _off_hours_judge(
    agent: Agent, bucket: datetime, org_id: uuid.UUID, lookback: timedelta, min_history: timedelta
) -> int:
    """1 if ``agent``'s vends in the hour starting at ``bucket`` raised a new off-hours alert."""
    seen = dict(
        _vends(bucket - lookback)
        .filter(org_id=org_id, agent_id=agent.id, created_at__lt=bucket)
        .annotate(h=ExtractHour("created_at", tzinfo=UTC))
        .values("h")
        .annotate(first=Min("created_at"))
        .values_list("h", "first")
    )
    if not seen or min(seen.values()) > bucket - min_history or bucket.hour in seen:
        return 0
    alert = alert_raise(
        rule=AlertRule.OFF_HOURS,
        severity=AlertSeverity.LOW,
        summary=f"{agent.name} fetched credentials at {bucket:%H}:00-{bucket:%H}:59 UTC, "
        f"an hour it has not used in {lookback.days} days",
        window_start=bucket,
        org=agent.org,
        agent=agent,
        details={"hour_utc": bucket.hour, "usual_hours_utc": sorted(seen)},
    )
    return int(alert is not None)


def _auth_failures(now: datetime) -> int:
    """Turn the addresses that crossed the refused-key threshold (counted in the cache by
    ``accounts.authfailures`` on the 401/403 path) into alerts.

    These alerts never suspend the agent, kill switch or not: the keys counted are refused ones
    (rotated out, expired), which prove nothing about the agent's current key. Anyone holding an
    old key could otherwise take a working agent offline by hammering the API with it.
    """
    raised = 0
    for crossing in authfailures.crossings(now=now):
        agent = None
        if crossing.agent_id is not None:
            agent = Agent.objects.select_related("org").filter(id=crossing.agent_id).first()
        window = settings.AGENTKEY_ANOMALY_AUTH_WINDOW_SECONDS
        who = f" with {agent.name}'s key" if agent else ""
        alert = alert_raise(
            rule=AlertRule.AUTH_FAILURES,
            severity=AlertSeverity.MEDIUM,
            summary=f"{crossing.count} refused agent keys from {crossing.address}{who} "
            f"within {window // 60} minutes",
            window_start=crossing.window_start,
            org=agent.org if agent else None,
            agent=agent,
            source_address=crossing.address,
            details={"refused": crossing.count, "window_seconds": window},
            kill_switch=False,
        )
        raised += alert is not None
    return raised


def anomalies_detect(*, now: datetime | None = None) -> Detected:
    """The beat job (every ``AGENTKEY_ANOMALY_JOB_SECONDS``): read the last hour of
    ``credential.vended`` rows once (the audit log's created_at index), judge the vend-rate
    and off-hours rules for the agents in it, and raise the refused-key alerts counted since."""
    now = now or timezone.now()
    rows = (
        _vends(now - timedelta(hours=1))
        .filter(created_at__gt=now - timedelta(hours=1), created_at__lte=now)
        .annotate(bucket=TruncHour("created_at", tzinfo=UTC))
        .values("org_id", "agent_id", "bucket")
        .annotate(n=Count("id"))
        .order_by()
    )
    recent: dict[uuid.UUID, tuple[uuid.UUID, int]] = {}
    buckets: dict[uuid.UUID, set[datetime]] = {}
    orgs: dict[uuid.UUID, uuid.UUID] = {}
    for row in rows:
        agent_id, org_id = row["agent_id"], row["org_id"]
        recent[agent_id] = (org_id, recent.get(agent_id, (org_id, 0))[1] + row["n"])
        buckets.setdefault(agent_id, set()).add(row["bucket"])
        orgs[agent_id] = org_id
    return Detected(
        vend_rate=_vend_rate(now, recent),
        off_hours=_off_hours(now, buckets, orgs),
        auth_failures=_auth_failures(now),
    )


def refuse_canary(tool: Tool) -> None:
    """Canary tools are never approved or assigned: no interface can make one vendable."""
    if tool.is_canary:
        raise Conflict(CANARY_NOT_APPROVABLE.format(tool=tool.name))
