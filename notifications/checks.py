"""System checks for the notification settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from notifications.dispatch import MODES


@register()
def notification_settings_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    mode = getattr(settings, "AGENTKEY_NOTIFICATIONS_DISPATCH", "background")
    if mode not in MODES:
        problems.append(
            Error(
                f"AGENTKEY_NOTIFICATIONS_DISPATCH={mode!r} is not a dispatch mode.",
                hint=f"Use one of: {', '.join(MODES)}.",
                id="notifications.E001",
            )
        )
    for name in (
        "AGENTKEY_NOTIFICATIONS_TIMEOUT",
        "AGENTKEY_NOTIFICATIONS_SWEEP_SECONDS",
        "AGENTKEY_NOTIFICATIONS_STUCK_AFTER",
        "AGENTKEY_NOTIFICATIONS_KEEP_DAYS",
    ):
        if int(getattr(settings, name, 1)) < 1:
            problems.append(Error(f"{name} must be at least 1.", id="notifications.E002"))
    timeout = int(getattr(settings, "AGENTKEY_NOTIFICATIONS_TIMEOUT", 10))
    if int(getattr(settings, "AGENTKEY_NOTIFICATIONS_STUCK_AFTER", 300)) <= timeout:
        problems.append(
            Error(
                "AGENTKEY_NOTIFICATIONS_STUCK_AFTER must be longer than AGENTKEY_NOTIFICATIONS_TIMEOUT.",
                hint="Otherwise a slow but live send is taken for a dead worker and sent twice.",
                id="notifications.E003",
            )
        )
    return problems
