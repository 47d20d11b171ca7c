"""Helpers for the anomaly and canary suites: a channel to a real receiver, crafted vend history."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from accounts.services import org_set_anomaly_auto_suspend
from audit.models import Action
from audit.services import audit_record
from grants.models import Alert
from notifications.models import Delivery, Event
from tests import factories
from tests.notifications.conftest import connect, receiver, run
from tests.support.servers import Server


@contextmanager
def alert_channel(org: Any) -> Iterator[Server]:
    """A Slack-style channel with the default events, posting to a receiver on 127.0.0.1."""
    with receiver() as server:
        connect(org, factories.OPERATOR, server, "slack")
        yield server


def alert_deliveries() -> list[Delivery]:
    return list(Delivery.objects.filter(event=Event.ALERT_RAISED).order_by("created_at"))


def delivered_text(delivery: Delivery, server: Server) -> str:
    """Send one alert delivery through the real pipeline; the message the receiver got, as text
    (the Slack title line, then every block's text)."""
    before = len(server.requests)
    assert run(delivery).status == "sent"
    [received] = server.requests[before:]
    body = json.loads(received.body)
    blocks = [json.dumps(block, ensure_ascii=False) for block in body.get("blocks", [])]
    return "\n".join([str(body["text"]), *blocks])


def kill_switch(org: Any, *, on: bool) -> None:
    org_set_anomaly_auto_suspend(org=org, actor=factories.OPERATOR, enabled=on)
    org.refresh_from_db()


def vend_history(
    time_machine: Any, *, agent: Any, tool: Any, days: list[datetime], hours: range, per_hour: int
) -> None:
    """``credential.vended`` rows as the vend writes them, stamped in the past (the clock is moved,
    the append-only log is written through audit_record as always)."""
    for day in days:
        for hour in hours:
            for minute in range(per_hour):
                time_machine.move_to(day.replace(hour=hour, minute=5 + minute), tick=False)
                audit_record(
                    action=Action.CREDENTIAL_VENDED,
                    actor=agent,
                    target=tool,
                    metadata={"tool_id": str(tool.id), "tool_name": tool.name, "grant_id": "history"},
                )


def previous_days(day: datetime, n: int) -> list[datetime]:
    return [day - timedelta(days=d) for d in range(n, 0, -1)]


def alerts(rule: str) -> list[Alert]:
    return list(Alert.objects.filter(rule=rule).order_by("created_at"))
